/*
 * libFuzzer target: the JSON tokenizer, and on whatever it accepts the lookups the ACME steps
 * make: problems, challenges (the one with an error too), the directory's lists, ARI's window.
 */
#define ACME_TINY_TEST
#include "../acme-tiny.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct json j = { 0 };
	struct buf types = { 0 }, der = { (char *)"cert", 4, 0 };
	char out[256];
	int k;

	if (json_parse(&j, (const char *)data, size) == 0) {
		json_get_str(&j, 0, "status", out, sizeof out);
		problem_text(&j, 0, out, sizeof out);
		for (k = 0; k < j.n; k++) {
			json_str(&j, k, out, sizeof out);
			json_get(&j, k, "type");
		}
		find_challenge(&j, "http-01");
		find_challenge(&j, NULL);
		challenge_types(&j, &types);
		first_str(&j, json_get(&j, json_get(&j, 0, "meta"), "caaIdentities"), out,
			  sizeof out);
		ari_point(&j, &der);
	}
	buf_free(&types);
	json_free(&j);
	return 0;
}
