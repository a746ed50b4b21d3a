/* libFuzzer target: the JSON tokenizer, and lookups on whatever it accepts. */
#define ACME_TINY_TEST
#include "../acme-tiny.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct json j = { 0 };
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
	}
	json_free(&j);
	return 0;
}
