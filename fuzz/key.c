/* libFuzzer target: PEM decoding, certificate chains and account keys (PKCS#1, SEC1, PKCS#8 DER). */
#define ACME_TINY_TEST
#include "../acme-tiny.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct buf in = { 0 }, der = { 0 };
	struct key k;
	size_t pos = 0;
	char name[64];

	buf_add(&in, data, size);
	while (pem_next(&in, &pos, name, sizeof name, &der) > 0)
		key_from_der(&k, der.p, der.len);
	key_from_der(&k, data, size);
	check_chain(&in);
	buf_free(&in);
	buf_free(&der);
	return 0;
}
