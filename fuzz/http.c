/*
 * libFuzzer target: HTTP response parsing (status line, headers, chunked,
 * Content-Length and close-delimited bodies), and the URL, Retry-After and
 * date parsers on the headers that carry them (Location, Link, Retry-After, Date; RFC 3339's
 * dates too, as ARI's). The first byte sets how many bytes each read hands over, so the input
 * is also split in odd places.
 */
#define ACME_TINY_TEST
#include "../acme-tiny.c"

static const uint8_t *src;
static size_t src_left, step;

static int fuzz_read(struct conn *c, unsigned char *buf, size_t len)
{
	size_t n = len < step ? len : step;

	(void)c;
	if (n > src_left)
		n = src_left;
	memcpy(buf, src, n);
	src += n;
	src_left -= n;
	return (int)n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct conn c = { .fd = -1, .read = fuzz_read };
	struct resp r = { 0 };
	struct url u;

	if (size < 1)
		return 0;
	step = (size_t)data[0] % 64 + 1;
	src = data + 1;
	src_left = size - 1;
	c.deadline = now_ms() + 60000;
	read_response(&c, &r, data[0] >= 0xF0);
	retry_after_ms(r.retry_after, r.date);
	url_parse(r.location, &u);
	url_parse(r.terms, &u);
	parse_date(r.date);
	buf_free(&r.body);
	return 0;
}
