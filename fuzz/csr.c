/*
 * libFuzzer target: CSR parsing (DER) into identifiers, public keys of CSRs
 * and certificates, and chain checks; a certificate's ARI certID and renewal
 * time; and cert_is_ours on a PEM and a CSR, parted where the first two bytes say.
 */
#define ACME_TINY_TEST
#include "../acme-tiny.c"

static struct names ns;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct buf in = { 0 }, pem = { 0 }, csr = { 0 };
	struct der key;
	struct cert c;
	char id[256], date[64];
	size_t cut;

	csr_names(data, size, &ns);
	csr_key(data, size, &key);
	if (!cert_parse(data, size, &c, &ns)) {
		cert_id(&c, id, sizeof id);
		date_text(renewal_time(&c), date, sizeof date);
	}
	buf_add(&in, data, size);
	check_chain(&in);
	cert_is_ours(&in, &in, &ns, -1);
	buf_free(&in);
	if (size >= 2 && (cut = (size_t)(data[0] << 8 | data[1])) <= size - 2) {
		buf_add(&pem, data + 2, cut);
		buf_add(&csr, data + 2 + cut, size - 2 - cut);
		if (!csr_names((const unsigned char *)csr.p, csr.len, &ns))
			cert_is_ours(&pem, &csr, &ns, -1);
		buf_free(&pem);
		buf_free(&csr);
	}
	return 0;
}
