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

	csr_names(data, size, &ns);
	public_key_of(data, size, 0, &key);
	public_key_of(data, size, 1, &key);
	buf_add(&in, data, size);
	check_chain(&in);
	cert_fits_csr(&in, &in);
	buf_free(&in);
	return 0;
}
