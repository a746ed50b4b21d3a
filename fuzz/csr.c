/*
 * libFuzzer target: CSR parsing (DER) into identifiers, public keys of CSRs
 * and certificates, and chain checks.
 */
#define ACME_TINY_TEST
#include "../acme-tiny.c"

static struct names ns;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct buf in = { 0 };
	struct der key;
	struct cert c;

	csr_names(data, size, &ns);
	csr_key(data, size, &key);
	cert_parse(data, size, &c, &ns);
	buf_add(&in, data, size);
	check_chain(&in);
	cert_is_ours(&in, &in, &ns);
	buf_free(&in);
	return 0;
}
