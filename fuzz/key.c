/*
 * libFuzzer target: PEM decoding, certificate chains, account keys (PKCS#1, SEC1, PKCS#8 DER),
 * trust anchors from certificates (--ca-file), a key against a certificate (--revoke-key), and
 * the command line's own parsers on the same bytes (--eab-hmac-key, --domains).
 */
#define ACME_TINY_TEST
#include "../acme-tiny.c"

static struct names ns;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct buf in = { 0 }, der = { 0 }, first_key = { 0 }, last_cert = { 0 };
	struct key k;
	size_t pos = 0;
	char name[64];

	buf_add(&in, data, size);
	while (pem_next(&in, &pos, name, sizeof name, &der) > 0) {
		if (!strcmp(name, "CERTIFICATE")) {
			add_anchor(&der);
			last_cert.len = 0;
			if (der.len)    /* an empty block leaves der.p NULL */
				buf_add(&last_cert, der.p, der.len);
		} else if (!first_key.len && der.len) {
			buf_add(&first_key, der.p, der.len);
		}
		key_from_der(&k, der.p, der.len);
	}
	free_trust_anchors();
	if (first_key.len && last_cert.len && !key_from_der(&k, first_key.p, first_key.len))
		key_fits_cert(&k, &last_cert);
	key_from_der(&k, data, size);
	check_chain(&in);
	der.len = 0;
	b64_decode_url(in.p, &der);
	names_from_list(in.p, &ns);
	buf_free(&in);
	buf_free(&der);
	buf_free(&first_key);
	buf_free(&last_cert);
	return 0;
}
