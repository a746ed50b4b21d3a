/* libFuzzer target: CSR parsing (DER) into identifiers, and chain checks. */
#define ACME_TINY_TEST
#include "../acme-tiny.c"

static struct names ns;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct buf in = { 0 };

	csr_names(data, size, &ns);
	buf_add(&in, data, size);
	check_chain(&in);
	buf_free(&in);
	return 0;
}
