/*
 * Unit tests for acme-tiny.c. From the top directory:
 *
 *   make tests/unit          (cc -O2 -Wall -Wextra -DACME_TINY_TEST -I. -o tests/unit
 *                             tests/unit.c -lbearssl)
 *   tests/unit               every group
 *   tests/unit json          one group; several names run several: tests/unit json http
 *   tests/unit --list        the names of the groups, one per line
 *
 * An unknown name prints the list of groups and exits 2. The builds for
 * other machines take the same arguments (qemu-mips-static tests/unit-mips url).
 *
 * acme-tiny.c is included whole, so its static functions can be called;
 * ACME_TINY_TEST renames its main. Each failed check prints one line,
 * "FAIL file:line: [case] what differed"; the last line is always
 * "N passed, N failed", and the exit status is 0 only if none failed.
 *
 * Keys and CSRs are made with the openssl command line in a temporary
 * directory, which is removed at the end. Parsers are given exact-size heap
 * copies of their input where it matters, so that ASan sees any read past
 * the end.
 *
 * The groups, named by area, run bottom up through the layers of
 * acme-tiny.c (see the map at its top), so that a broken foundation fails
 * first; the sections of this file follow the same order:
 *
 *   9. bytes, files, time, messages   base64 files dates messages
 *   8. JSON                           json
 *   7. keys and DER                   pem der keys jwk names csr load
 *   6. JWS and CSRs                   jws generate (keys and CSRs made by acme-tiny)
 *   5. HTTP                           http url
 *   4. around the run                 args
 *   2. ACME steps                     chain
 *
 * Each group runs alone: one that needs key or CSR files that another group
 * checks (keys, csr) has them made first, once per run. Built with
 * -DUNIT_NO_BEARSSL (big-endian MIPS, see tests/unit-mips in the Makefile)
 * the groups that need BearSSL are left out (keys jwk load jws generate
 * chain), and pem and csr skip their checks that need it.
 */
/*
 * spies: what run_hook forks and how it waits (a hook that SIGKILL cannot end, stuck in the
 * kernel, is played by hiding its end), and the signal mask when a temporary file is made
 */
#define _Fork spy_fork
#define mkstemp spy_mkstemp
#define waitpid spy_waitpid
#include "acme-tiny.c"
#undef main
#undef _Fork
#undef mkstemp
#undef waitpid
pid_t _Fork(void);
int mkstemp(char *);
pid_t waitpid(pid_t, int *, int);
static int n_forks, stuck, n_blocking_waits;
static pid_t last_fork;
static sigset_t mask_at_mkstemp;
pid_t spy_fork(void)
{
	n_forks++;
	return last_fork = _Fork();
}
pid_t spy_waitpid(pid_t pid, int *status, int options)
{
	n_blocking_waits += !(options & WNOHANG);
	return stuck && (options & WNOHANG) ? 0 : waitpid(pid, status, options);
}
int spy_mkstemp(char *t)
{
	sigprocmask(SIG_BLOCK, NULL, &mask_at_mkstemp);
	return mkstemp(t);
}

#include <sys/wait.h>
int setgroups(size_t, const gid_t *);   /* <grp.h> hides it from _XOPEN_SOURCE */

/* ===================== checks ===================== */

static int n_passed, n_failed;
static char context[256];    /* the case at hand, printed with a failure */

static void set_context(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(context, sizeof context, fmt, ap);
	va_end(ap);
}

/* Prints s with bytes outside printable ASCII as \xNN: the output stays one clean line. */
static void put_escaped(const char *s)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c < 0x20 || c >= 0x7F)
			printf("\\x%02x", c);
		else
			putchar(c);
	}
}

/* Counts one check; prints a line if it failed. Returns ok. */
static int check(int ok, const char *file, int line, const char *fmt, ...)
{
	char msg[2048];
	va_list ap;

	if (ok) {
		n_passed++;
		return 1;
	}
	n_failed++;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	printf("FAIL %s:%d: ", file, line);
	if (context[0]) {
		putchar('[');
		put_escaped(context);
		printf("] ");
	}
	put_escaped(msg);
	putchar('\n');
	fflush(stdout);
	return 0;
}

static int check_int(long long got, long long want, const char *file, int line, const char *expr)
{
	return check(got == want, file, line, "%s is %lld, expected %lld", expr, got, want);
}

static int check_str(const char *got, const char *want, const char *file, int line,
		     const char *expr)
{
	int ok = got && want ? !strcmp(got, want) : got == want;

	return check(ok, file, line, "%s is \"%s\", expected \"%s\"", expr,
		     got ? got : "(null)", want ? want : "(null)");
}

static int check_mem(const void *got, size_t glen, const void *want, size_t wlen,
		     const char *file, int line, const char *expr)
{
	size_t k = 0;

	while (k < glen && k < wlen && ((const unsigned char *)got)[k] == ((const unsigned char *)want)[k])
		k++;
	return check(glen == wlen && k == glen, file, line,
		     "%s: %zu bytes, expected %zu, first difference at byte %zu", expr, glen, wlen, k);
}

#define CHECK(cond) check(!!(cond), __FILE__, __LINE__, "%s", #cond)
#define CHECK_INT(got, want) check_int((long long)(got), (long long)(want), __FILE__, __LINE__, #got)
#define CHECK_STR(got, want) check_str((got), (want), __FILE__, __LINE__, #got)
#define CHECK_MEM(got, glen, want, wlen) check_mem((got), (glen), (want), (wlen), __FILE__, __LINE__, #got)

/* A string literal and its length, for inputs that may hold NUL bytes. */
#define S(lit) lit, sizeof lit - 1

/* ===================== helpers: files, commands, decoders ===================== */

static char tmpdir[] = "/tmp/acme-tiny-unit-XXXXXX";

/* name inside the temp directory; the result is valid until the next call. */
static const char *tpath(const char *name)
{
	static char path[512];

	snprintf(path, sizeof path, "%s/%s", tmpdir, name);
	return path;
}

/* Runs a shell command in the temp directory, output discarded; its exit status or -1. */
static int sh(const char *fmt, ...)
{
	static char cmd[8192], full[8400];
	va_list ap;
	int r;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof cmd, fmt, ap);
	va_end(ap);
	snprintf(full, sizeof full, "cd '%s' && { %s; } >/dev/null 2>&1", tmpdir, cmd);
	fflush(stdout);
	r = system(full);
	return r == -1 || !WIFEXITED(r) ? -1 : WEXITSTATUS(r);
}

/* Reads a file of the temp directory into b (replacing its contents); 0 or -1. */
static int slurp(const char *name, struct buf *b)
{
	char chunk[4096];
	size_t n;
	FILE *f = fopen(tpath(name), "rb");

	if (!f)
		return -1;
	b->len = 0;
	while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
		buf_add(b, chunk, n);
	fclose(f);
	return 0;
}

/* Writes a file of the temp directory; 0 or -1. */
static int spit(const char *name, const void *data, size_t len)
{
	FILE *f = fopen(tpath(name), "wb");
	int ok;

	if (!f)
		return -1;
	ok = fwrite(data, 1, len, f) == len;
	return fclose(f) == 0 && ok ? 0 : -1;
}

static int file_exists(const char *name)
{
	return access(tpath(name), R_OK) == 0;
}

/* Unpadded base64url, decoded independently of acme-tiny's encoder. Bytes, or -1. */
static long b64url_decode(const char *s, size_t n, unsigned char *out, size_t cap)
{
	static const char alphabet[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	unsigned long acc = 0;
	size_t i, o = 0;
	int bits = 0;

	if (n % 4 == 1)
		return -1;
	for (i = 0; i < n; i++) {
		const char *p = s[i] ? strchr(alphabet, s[i]) : NULL;

		if (!p)
			return -1;
		acc = (acc << 6 | (unsigned long)(p - alphabet)) & 0xFFFFFF;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o == cap)
				return -1;
			out[o++] = (unsigned char)(acc >> bits);
		}
	}
	return (long)o;
}

/* Hex digits (either case) into bytes; the count, or -1. */
static long hex_decode(const char *s, unsigned char *out, size_t cap)
{
	size_t n = strlen(s), k;

	if (n % 2 || n / 2 > cap)
		return -1;
	for (k = 0; k < n / 2; k++) {
		int hi = hex_digit(s[2 * k]), lo = hex_digit(s[2 * k + 1]);

		if (hi < 0 || lo < 0)
			return -1;
		out[k] = (unsigned char)(hi * 16 + lo);
	}
	return (long)(n / 2);
}

/* An exact-size heap copy of data, so that ASan catches reads past its end. */
static unsigned char *exact_copy(const void *data, size_t len)
{
	unsigned char *p = malloc(len ? len : 1);

	if (!p) {
		fputs("out of memory\n", stderr);
		exit(2);
	}
	memcpy(p, data, len);
	return p;
}

/*
 * Runs fn(arg) in a child process, so that neither a crash nor acme-tiny's
 * fail() (which exits) ends the test run. Returns 0 if fn returned, 1 if the
 * child ended through exit() as fail() does, -1 if it crashed; child_how
 * says how it ended. A sanitizer report ends a process with _exit(), which
 * skips atexit handlers: that is how a crash under ASan, which also exits
 * with status 1, is told apart from fail()'s exit(1).
 */
static char child_how[64];

static void child_exit_marker(void)
{
	_exit(100);
}

static int in_child(void (*fn)(const char *), const char *arg)
{
	pid_t pid;
	int st, fd;

	fflush(stdout);
	fflush(stderr);
	if ((pid = fork()) < 0) {
		snprintf(child_how, sizeof child_how, "fork failed");
		return -1;
	}
	if (pid == 0) {
		/* fail()'s one line on stderr is expected here: keep the output clean */
		if ((fd = open("/dev/null", O_WRONLY)) >= 0) {
			dup2(fd, 2);
			close(fd);
		}
		atexit(child_exit_marker);
		fn(arg);
		_exit(0);
	}
	if (waitpid(pid, &st, 0) != pid) {
		snprintf(child_how, sizeof child_how, "waitpid failed");
		return -1;
	}
	if (WIFSIGNALED(st))
		snprintf(child_how, sizeof child_how, "killed by signal %d", WTERMSIG(st));
	else if (WIFEXITED(st) && WEXITSTATUS(st) == 100)
		snprintf(child_how, sizeof child_how, "ended through exit()");
	else
		snprintf(child_how, sizeof child_how, "exit status %d without atexit handlers", WEXITSTATUS(st));
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return 0;
	if (WIFEXITED(st) && WEXITSTATUS(st) == 100)
		return 1;
	return -1;
}

/* ===================== 9. bytes: base64 and base64url ===================== */

static void test_base64(void)
{
	/* RFC 4648 section 10, without the padding */
	static const struct {
		const char *in, *out;
	} vectors[] = {
		{ "", "" }, { "f", "Zg" }, { "fo", "Zm8" }, { "foo", "Zm9v" },
		{ "foob", "Zm9vYg" }, { "fooba", "Zm9vYmE" }, { "foobar", "Zm9vYmFy" },
	};
	static const unsigned char dash_underscore[] = { 0xfb, 0xff };          /* "+/8=" in base64 */
	static const unsigned char all_four[] = { 0xfb, 0xff, 0xbf };           /* "+/+/" */
	unsigned char all[256], back[256];
	struct buf b = { 0 };
	char s[300];
	size_t k;

	set_context("base64url");
	for (k = 0; k < sizeof vectors / sizeof vectors[0]; k++) {
		b.len = 0;
		buf_b64url(&b, vectors[k].in, strlen(vectors[k].in));
		CHECK_STR(b.len ? b.p : "", vectors[k].out);
	}
	b.len = 0;
	buf_b64url(&b, dash_underscore, sizeof dash_underscore);
	CHECK_STR(b.p, "-_8");
	b.len = 0;
	buf_b64url(&b, all_four, sizeof all_four);
	CHECK_STR(b.p, "-_-_");

	/* every byte value, at every offset within a group of three */
	for (k = 0; k < 256; k++)
		all[k] = (unsigned char)(255 - k);
	b.len = 0;
	buf_b64url(&b, all, sizeof all);
	CHECK_INT(b.len, (256 * 4 + 2) / 3);
	CHECK_MEM(back, (size_t)b64url_decode(b.p, b.len, back, sizeof back), all, sizeof all);
	buf_free(&b);

	set_context("is_b64url");
	CHECK(!is_b64url("", 10));
	memset(s, 'A', sizeof s);
	s[10] = 0;
	CHECK(is_b64url(s, 10));                     /* exactly max */
	s[10] = 'A';
	s[11] = 0;
	CHECK(!is_b64url(s, 10));                    /* max + 1 */
	CHECK(is_b64url("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", 64));
	CHECK(!is_b64url("ab/c", 10));
	CHECK(!is_b64url("ab+c", 10));
	CHECK(!is_b64url("abc=", 10));
	CHECK(!is_b64url("a.b", 10));
	CHECK(!is_b64url("../x", 10));
	CHECK(!is_b64url("a b", 10));
	CHECK(!is_b64url("a\n", 10));
	CHECK(!is_b64url("\xc3\xa9", 10));
	context[0] = 0;
}

/* b64_decode of s: the bytes as a string (NUL-free cases only), or NULL if refused. */
static const char *b64_of(const char *s)
{
	static struct buf b;

	b.len = 0;
	buf_add(&b, "", 0);
	return b64_decode(s, strlen(s), &b) ? NULL : b.p;
}

static void test_b64_decode(void)
{
	set_context("b64_decode");
	CHECK_STR(b64_of(""), "");                          /* RFC 4648, section 10 */
	CHECK_STR(b64_of("Zg=="), "f");
	CHECK_STR(b64_of("Zm8="), "fo");
	CHECK_STR(b64_of("Zm9v"), "foo");
	CHECK_STR(b64_of("Zm9vYg=="), "foob");
	CHECK_STR(b64_of("Zm9vYmE="), "fooba");
	CHECK_STR(b64_of("Zm9vYmFy"), "foobar");
	CHECK_STR(b64_of("Zm9v\r\nYmE=\n"), "fooba");       /* line breaks anywhere */
	CHECK_STR(b64_of("Zm\n9vYmE\n=\n"), "fooba");
	CHECK_STR(b64_of("+/+/"), "\xfb\xff\xbf");
	CHECK(!b64_of("Zg"));                               /* padding is required */
	CHECK(!b64_of("Zm8"));
	CHECK(!b64_of("Zg="));
	CHECK(!b64_of("Z==="));
	CHECK(!b64_of("Zm9v="));
	CHECK(!b64_of("Zg==Zg=="));                         /* padding only at the end */
	CHECK(!b64_of("Zm8=Zg=="));
	CHECK(!b64_of("Zg======"));                         /* at most two '=' */
	CHECK(!b64_of("Zg==Zm9v"));                         /* whole groups after padding */
	CHECK(!b64_of("Zm8=Zm9v"));
	CHECK(!b64_of("Zm 9v"));                            /* no spaces, no url alphabet */
	CHECK(!b64_of("Zm-_"));
	CHECK(!b64_of("Zm9v\x80"));
	CHECK(!b64_of("Zm9v\n\nYmFy"));                    /* no blank lines, as openssl */
	CHECK(!b64_of("Zm9v\r\n\r\nYmFy"));
	CHECK(!b64_of("\n\nZm9v"));
	context[0] = 0;
}

/*
 * b64_decode_url of s appended to a buffer that holds "x" already: the bytes
 * after the "x" into out (at most cap) and their count, or -1 if refused.
 */
static long b64url_of(const char *s, unsigned char *out, size_t cap)
{
	struct buf b = { 0 };
	long n = -1;

	buf_str(&b, "x");
	if (!b64_decode_url(s, &b) && b.len >= 1 && b.p[0] == 'x' && b.len - 1 <= cap) {
		n = (long)(b.len - 1);
		memcpy(out, b.p + 1, b.len - 1);
	}
	buf_free(&b);
	return n;
}

/* b64_decode_url (--eab-hmac-key): unpadded base64url only, appended to what is there. */
static void test_b64_decode_url(void)
{
	/* RFC 4648 section 10, without the padding */
	static const struct {
		const char *in, *out;
	} vectors[] = {
		{ "", "" }, { "Zg", "f" }, { "Zm8", "fo" }, { "Zm9v", "foo" },
		{ "Zm9vYg", "foob" }, { "Zm9vYmE", "fooba" }, { "Zm9vYmFy", "foobar" },
	};
	static const char *const refused[] = {
		"Zg==", "Zm8=", "Zg=", "=", "Zm9v=",      /* padding */
		"+/8", "Zm+v", "Zm/v", "-_+/",             /* base64's own alphabet */
		"Z", "Zm9vY",                              /* 1 character over a group of 4 */
		"Zm 9v", "Zm9v\n", "Zm\r\n9v", "\nZm9v",   /* blanks and line breaks, */
		"Zm\r\r\r\r9v", "Zm\r\n\r\r9v",             /* ...as many as a group */
		"Zm9v\x80", "Zm.9v", "Zm9v!",
	};
	unsigned char all[256], out[300];
	struct buf b = { 0 };
	size_t k;
	long n;

	set_context("b64_decode_url");
	for (k = 0; k < sizeof vectors / sizeof vectors[0]; k++) {
		set_context("b64_decode_url \"%s\"", vectors[k].in);
		n = b64url_of(vectors[k].in, out, sizeof out);
		CHECK_MEM(out, (size_t)(n < 0 ? 0 : n), vectors[k].out, strlen(vectors[k].out));
		CHECK(n >= 0);
	}
	set_context("b64_decode_url: the url alphabet");
	n = b64url_of("-_8", out, sizeof out);
	CHECK_MEM(out, (size_t)(n < 0 ? 0 : n), "\xfb\xff", 2);
	n = b64url_of("-_-_", out, sizeof out);
	CHECK_MEM(out, (size_t)(n < 0 ? 0 : n), "\xfb\xff\xbf", 3);
	for (k = 0; k < sizeof refused / sizeof refused[0]; k++) {
		set_context("b64_decode_url refuses \"%s\"", refused[k]);
		CHECK_INT(b64url_of(refused[k], out, sizeof out), -1);
	}
	/* every byte value, at every offset within a group of three, both ways */
	set_context("b64_decode_url: every byte");
	for (k = 0; k < 256; k++)
		all[k] = (unsigned char)(k * 7 + 3);
	for (k = 254; k <= 256; k++) {
		b.len = 0;
		buf_b64url(&b, all, k);
		n = b64url_of(b.p, out, sizeof out);
		CHECK_MEM(out, (size_t)(n < 0 ? 0 : n), all, k);
	}
	buf_free(&b);
	context[0] = 0;
}

/* ===================== 9. whole files: read_file, write_file; and our_leftover (2.), on challenge files ===================== */

/* Reads path as the CA file would be read; for in_child. */
static void read_one(const char *path)
{
	struct buf b = { 0 };

	xread_file(path, "file", &b);
	buf_free(&b);
}

/* Reads path within 5 s (else SIGALRM kills it: a read must not wait for ever); it must say key. */
static void read_key_within_5s(const char *path)
{
	struct buf b = { 0 };

	signal(SIGALRM, SIG_DFL);
	alarm(5);
	xread_file(path, "file", &b);
	if (strcmp(b.p, "key"))
		_exit(3);
	buf_free(&b);
}

/* read_file takes a file of MAX_FILE bytes and refuses one more. */
static void test_read_file(void)
{
	unsigned char p[64];
	struct buf b = { 0 };

	set_context("read_file: MAX_FILE bytes, and one more");
	memset(p, 'a', sizeof p);
	for (b.len = 0; b.len < MAX_FILE;)
		buf_add(&b, p, sizeof p);
	CHECK(spit("max", b.p, MAX_FILE) == 0);
	buf_add(&b, "a", 1);
	CHECK(spit("max1", b.p, b.len) == 0);
	CHECK_INT(in_child(read_one, tpath("max")), 0);
	CHECK_INT(in_child(read_one, tpath("max1")), 1);
	buf_free(&b);
	{	/* a FIFO without a writer is empty; a pipe must end within --timeout */
		int fds[2], saved = run.timeout;
		char fd_path[64];
		long long start;
		set_context("read_file: a FIFO, a pipe");
		run.timeout = 1;
		CHECK_INT(sh("mkfifo fifo-a fifo-b"), 0);
		CHECK_INT(sh("(sleep 0.3; timeout 3 sh -c 'printf key > fifo-a') & true"), 0);
		CHECK_INT(in_child(read_key_within_5s, tpath("fifo-a")), 0);    /* a writer comes */
		start = now_ms();
		CHECK_INT(in_child(read_key_within_5s, tpath("fifo-b")), 1);    /* none comes */
		CHECK(now_ms() - start >= 900 && now_ms() - start < 3000);
		CHECK(pipe(fds) == 0);
		snprintf(fd_path, sizeof fd_path, "/dev/fd/%d", fds[0]);
		start = now_ms();       /* the write end stays open, in the child too */
		CHECK_INT(in_child(read_key_within_5s, fd_path), 1);
		CHECK(now_ms() - start >= 900 && now_ms() - start < 3000);
		CHECK(write(fds[1], "key", 3) == 3 && close(fds[1]) == 0);
		CHECK_INT(in_child(read_key_within_5s, fd_path), 0);    /* <(pass show key) */
		close(fds[0]);
		run.timeout = saved;
	}
	context[0] = 0;
}

static void create_again(const char *path)
{
	xwrite_file(path, "other", 5, 0);
}

static void replace_in(const char *path)
{
	xwrite_file(path, "new", 3, 1);
}

/* replace_in, then exit() unless SIGTERM and SIGALRM are held still */
static void replace_held(const char *path)
{
	sigset_t now;
	replace_in(path);
	sigprocmask(SIG_BLOCK, NULL, &now);
	if (!sigismember(&now, SIGTERM) || !sigismember(&now, SIGALRM))
		exit(1);
}

/* replace_in as uid 65534, in group 65534 and in group 100 too */
static void replace_as_member(const char *path)
{
	gid_t groups[] = { 100 };
	if (!setgroups(1, groups) && !setgid(65534) && !setuid(65534))
		replace_in(path);
}

/*
 * write_file: a key is made 0600 and an existing file is never replaced; a
 * certificate replaces the old file and keeps its mode (0644 when new), with
 * signals held from then on.
 * Neither leaves a temporary file, and a failure leaves the old file.
 */
static void test_write_file(void)
{
	struct stat st;
	struct buf b = { 0 };

	set_context("write_file, a key");
	sigemptyset(&mask_at_mkstemp);
	xwrite_file(tpath("made.key"), "secret", 6, 0);
	{	/* signals held while the temporary file exists, and let in again after */
		sigset_t now;
		sigprocmask(SIG_BLOCK, NULL, &now);
		CHECK(sigismember(&mask_at_mkstemp, SIGTERM) && sigismember(&mask_at_mkstemp, SIGALRM));
		CHECK(!sigismember(&now, SIGTERM) && !sigismember(&now, SIGALRM));
	}
	CHECK(stat(tpath("made.key"), &st) == 0 && (st.st_mode & 0777) == 0600);
	CHECK(slurp("made.key", &b) == 0 && b.len == 6 && !memcmp(b.p, "secret", 6));
	/* made by another run since we looked: that one is the key, kept as it is */
	CHECK_INT(in_child(create_again, tpath("made.key")), 0);
	CHECK(slurp("made.key", &b) == 0 && b.len == 6 && !memcmp(b.p, "secret", 6));
	CHECK_INT(sh("ls | grep -q tmp-"), 1);                      /* no temp file left */
	CHECK_INT(in_child(create_again, tpath("no-such-dir/x.key")), 1);

	set_context("write_file, a certificate");
	CHECK_INT(in_child(replace_in, tpath("chain.pem")), 0);
	CHECK(stat(tpath("chain.pem"), &st) == 0 && (st.st_mode & 0777) == 0644);
	/* the run's last act: a signal once it is in place is too late to fail the run */
	CHECK_INT(in_child(replace_held, tpath("held.pem")), 0);
	CHECK_INT(sh("printf old > old.pem && chmod 640 old.pem"), 0);
	CHECK_INT(in_child(replace_in, tpath("old.pem")), 0);
	CHECK(stat(tpath("old.pem"), &st) == 0 && (st.st_mode & 0777) == 0640);
	CHECK(slurp("old.pem", &b) == 0 && b.len == 3 && !memcmp(b.p, "new", 3));
	CHECK_INT(sh("mkdir -p dir.pem/x"), 0);                   /* rename fails, even for root */
	CHECK_INT(in_child(replace_in, tpath("dir.pem")), 1);
	CHECK_INT(sh("test -d dir.pem/x"), 0);
	/* ...and the new certificate, issued already, stays in the temporary file it names */
	CHECK_INT(sh("[ \"$(cat dir.pem.tmp-*)\" = new ] && rm dir.pem.tmp-*"), 0);
	CHECK_INT(sh("ls | grep -q tmp-"), 1);
	if (geteuid() == 0) {   /* one who may not give the file away keeps its group if a member */
		set_context("write_file, by a member of the old file's group");
		CHECK_INT(sh("mkdir -m 777 grp && printf old > grp/c.pem && chown 0:100 grp/c.pem && "
			     "chmod 711 ."), 0);
		CHECK_INT(in_child(replace_as_member, tpath("grp/c.pem")), 0);
		CHECK(stat(tpath("grp/c.pem"), &st) == 0 && st.st_uid == 65534 && st.st_gid == 100);
		CHECK_INT(sh("chmod 700 ."), 0);
	}
	buf_free(&b);
	context[0] = 0;
}

/* With stdin and stderr closed: guard_std_fds gives them /dev/null, so a file opened is fd 3+. */
static void std_fds_closed(const char *arg)
{
	(void)arg;
	close(0);
	close(2);
	guard_std_fds();
	if (open("/dev/null", O_RDONLY) < 3)
		_exit(1);
}

/*
 * our_leftover: a challenge file already there is ours to replace only if
 * it is a regular file (no FIFO, no symlink) with one link, holding exactly
 * this key authorization: our own, left by a run that was killed.
 */
static void test_our_leftover(void)
{
	static const struct taken t = { .file = 1, .token = "mode-tok", .auth = "mode-tok.th" };
	struct stat st;
	mode_t old;
	int fd;

	set_context("our_leftover");
	acme_fd = open(tmpdir, O_RDONLY | O_DIRECTORY);         /* as --acme-dir */
	CHECK(acme_fd >= 0);
	CHECK(spit("tok", "tok.thumb", 9) == 0);
	CHECK(our_leftover("tok", "tok.thumb"));
	CHECK(!our_leftover("tok", "tok.other"));
	CHECK(!our_leftover("tok", "tok.thum"));
	CHECK(spit("tokp", "tok.thu", 7) == 0);
	CHECK(!our_leftover("tokp", "tok.thumb"));          /* a prefix: not ours */
	CHECK(sh("ln tok tok-link") == 0);
	CHECK(!our_leftover("tok", "tok.thumb"));            /* two links: not ours */
	CHECK(sh("mkfifo fifo && ln -s tok-link sym") == 0);
	CHECK(!our_leftover("fifo", "tok.thumb"));           /* no hang, no */
	CHECK(!our_leftover("sym", "tok.thumb"));
	CHECK(spit("one", "tok.thumb", 9) == 0 && sh("ln -s one sym-one") == 0);
	CHECK(our_leftover("one", "tok.thumb"));
	CHECK(!our_leftover("sym-one", "tok.thumb"));        /* a symlink, to a file of one link */
	CHECK(spit("tokl", "tok.thumbX", 10) == 0);
	CHECK(!our_leftover("tokl", "tok.thumb"));          /* more than it: not ours */
	CHECK(spit("tokn", "tok.thumb\0", 10) == 0);
	CHECK(!our_leftover("tokn", "tok.thumb"));          /* even a NUL more */
	fd = open(tpath("fifo"), O_RDWR | O_NONBLOCK);     /* a FIFO that holds exactly it */
	CHECK(fd >= 0 && write(fd, "tok.thumb", 9) == 9);
	CHECK(!our_leftover("fifo", "tok.thumb"));           /* no regular file: not ours */
	close(fd);
	set_context("xtake_on: a challenge file the web server may read, under umask 077");
	old = umask(077);
	CHECK_INT(xtake_on(&t), 1);
	umask(old);
	CHECK(fstatat(acme_fd, "mode-tok", &st, 0) == 0 && (st.st_mode & 0777) == 0644);
	undo_challenges("failed", 0);
	CHECK(faccessat(acme_fd, "mode-tok", F_OK, 0) < 0);  /* and removed again */
	close(acme_fd);
	acme_fd = -1;
	set_context("guard_std_fds: no file of ours as fd 0, 1 or 2 (stderr: fail()'s line)");
	CHECK_INT(in_child(std_fds_closed, NULL), 0);
	context[0] = 0;
}

/* ===================== 9. dates: RFC 3339 (ARI), and X.509's ===================== */

static void test_rfc3339(void)
{
	static const struct { const char *s; long long t; } good[] = {
		{ "2026-03-17T08:13:43Z", 1773735223 }, { "2026-03-17T08:13:43.123456Z", 1773735223 },
		{ "2026-03-17t08:13:43z", 1773735223 }, { "2026-03-17T10:13:43+02:00", 1773735223 },
		{ "2026-03-17T02:43:43-05:30", 1773735223 }, { "1970-01-01T00:00:00Z", 0 },
		{ "2038-01-19T03:14:08Z", 2147483648LL }, { "2106-02-07T06:28:16Z", 4294967296LL },
		{ "2016-12-31T23:59:60Z", 1483228800 }, { "Sun, 06 Nov 1994 08:49:37 GMT", 784111777 },
		/* the last days of February in leap years, 2000's too */
		{ "2024-02-29T00:00:00Z", 1709164800 }, { "2000-02-29T00:00:00Z", 951782400 },
		{ "Thu, 29 Feb 2024 00:00:00 GMT", 1709164800 },
	};
	static const char *const bad[] = {
		"", "2026-03-17", "2026-03-17T08:13Z", "2026-03-17T08:13:43", "2026-03-17 08:13:43Z",
		"2026-13-17T08:13:43Z", "2026-03-32T08:13:43Z", "2026-03-17T24:13:43Z",
		"2026-03-17T08:60:43Z", "2026-03-17T08:13:61Z", "2026-03-17T08:13:43.Z",
		"2026-03-17T08:13:43+0200", "2026-03-17T08:13:43+24:00", "2026-03-17T08:13:43+02:60",
		"2026-03-17T08:13:43Zjunk", "2026-03-17T08:13:43+02:00 ", "x026-03-17T08:13:43Z",
		"2026-03-17T08:13:43.5.5Z", "+2026-03-17T08:13:43Z",
		"2026-03-17T08:13:43.5", "2026-03-17T08:13:43.123456",  /* fraction, no offset */
		/* one separator or field wrong each, the rest well-formed */
		"2026-03x17T08:13:43Z", "2026-03-17T08:13x43Z", "2026-03-17T08:13:43+02x00",
		"2026-03-17T08:13:43.+02:00", "2026-03-17T-1:13:43Z", "2026-03-17T08:-1:43Z",
		"Sun,x06 Nov 1994 08:49:37 GMT", "Sun, 06xNov 1994 08:49:37 GMT",
		"Sun, 06 Novx1994 08:49:37 GMT", "Sun, 06 Nov 1994x08:49:37 GMT",
		"Sun, 06 Nov 1994 08x49:37 GMT", "Sun, 06 Nov 1994 08:49x37 GMT",
		/* a day past its month's end (RFC 3339 5.7, RFC 9110 5.6.7), not a day of the next */
		"2026-02-29T00:00:00Z", "2026-02-30T08:13:43Z", "2026-02-31T08:13:43Z",
		"2026-04-31T08:13:43Z", "2100-02-29T00:00:00Z", "Tue, 31 Feb 1994 08:49:37 GMT",
	};
	size_t k;
	for (k = 0; k < sizeof good / sizeof good[0]; k++) {
		set_context("parse_date %s", good[k].s);
		CHECK_INT(parse_date(good[k].s), good[k].t);
	}
	for (k = 0; k < sizeof bad / sizeof bad[0]; k++) {
		set_context("parse_date %s", bad[k]);
		CHECK(parse_date(bad[k]) < 0);
	}
	context[0] = 0;
}

/* UTCTime (years 1950-2049) and GeneralizedTime, strictly YYMMDDHHMMSSZ and YYYYMMDDHHMMSSZ. */
static void test_der_time(void)
{
	static const struct { const char *der; size_t len; long long t; } cases[] = {
		{ S("\x17\x0d" "260317081343Z"), 1773735223 },
		{ S("\x17\x0d" "500101000000Z"), -631152000 },         /* 1950: before 1970, so < 0 */
		{ S("\x17\x0d" "491231235959Z"), 2524607999LL },        /* 2049 */
		{ S("\x18\x0f" "20390101000000Z"), 2177452800LL },
		{ S("\x18\x0f" "21060207062816Z"), 4294967296LL },
		{ S("\x17\x0d" "260317081343X"), -1 }, { S("\x17\x0b" "2603170813Z"), -1 },
		{ S("\x18\x0d" "260317081343Z"), -1 }, { S("\x17\x0f" "20260317081343Z"), -1 },
		{ S("\x04\x0d" "260317081343Z"), -1 }, { S("\x17\x0d" "261317081343Z"), -1 },
		{ S("\x17\x0d" "2603170813 3Z"), -1 }, { S("\x17\x0e" "260317081343Z"), -1 },
		{ S("\x17\x0d" "x60317081343Z"), -1 }, { S("\x18\x0f" "20x60317081343Z"), -1 },
		/* leap days of leap years; days no month has, as openssl refuses them */
		{ S("\x17\x0d" "240229000000Z"), 1709164800 },
		{ S("\x18\x0f" "20000229000000Z"), 951782400 },
		{ S("\x17\x0d" "260231000000Z"), -1 }, { S("\x17\x0d" "230229000000Z"), -1 },
		{ S("\x17\x0d" "260431000000Z"), -1 }, { S("\x18\x0f" "21000229000000Z"), -1 },
	};
	size_t k;
	for (k = 0; k < sizeof cases / sizeof cases[0]; k++) {
		unsigned char *p = exact_copy(cases[k].der, cases[k].len);
		struct der in = { p, cases[k].len };
		set_context("der_time case %zu", k);
		CHECK_INT(der_time(&in), cases[k].t);
		free(p);
	}
	context[0] = 0;
}

/* ===================== 9. dates: Retry-After ===================== */

static void test_retry_after(void)
{
	char date[64];
	time_t t;
	struct tm tm;
	long long ms;

	set_context("retry_after_ms");
	CHECK_INT(retry_after_ms("120", ""), 120000);
	CHECK_INT(retry_after_ms("0", ""), 0);
	CHECK_INT(retry_after_ms("1", ""), 1000);
	CHECK_INT(retry_after_ms("999999999", ""), 999999999000LL);
	/* more digits than fit: a very long wait, not an overflow */
	CHECK(retry_after_ms("99999999999999999999999999", "") >= 999999999000LL);
	CHECK(retry_after_ms("18446744073709551617", "") >= 999999999000LL);
	CHECK_INT(retry_after_ms("Sun, 06 Nov 1994 08:49:37 GMT", ""), 0);
	CHECK_INT(retry_after_ms("Thu, 01 Jan 1970 00:00:00 GMT", ""), 0);

	t = time(NULL) + 3600;
	gmtime_r(&t, &tm);
	strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
	set_context("retry_after_ms %s", date);
	ms = retry_after_ms(date, "");
	check(ms >= 3590000 && ms <= 3600000, __FILE__, __LINE__, "%lld ms, expected about an hour", ms);
	/* a date counts from the server's clock, its Date, when it sends one: ours may be off */
	set_context("retry_after_ms by the server's Date");
	CHECK_INT(retry_after_ms("Sun, 06 Nov 1994 08:49:37 GMT", "Sun, 06 Nov 1994 08:49:35 GMT"),
		  2000);
	CHECK_INT(retry_after_ms("Sun, 06 Nov 1994 08:49:37 GMT", "Sun, 06 Nov 1994 08:50:00 GMT"),
		  0);
	CHECK_INT(retry_after_ms("7", "Sun, 06 Nov 1994 08:50:00 GMT"), 7000);
	CHECK(retry_after_ms(date, "Sun, 06 Nov 1994 08:49:37 GMT") > 3600000LL * 24 * 365);
	ms = retry_after_ms(date, "Sun, 06 Nov 1994 08:49:37");       /* no usable Date: ours */
	check(ms >= 3590000 && ms <= 3600000, __FILE__, __LINE__, "%lld ms, expected about an hour", ms);
	/* the calendar behind IMF-fixdates: known days, leap years and not */
	set_context("days_from_civil");
	CHECK_INT(days_from_civil(1970, 1, 1), 0);
	CHECK_INT(days_from_civil(1994, 11, 6) * 86400 + 8 * 3600 + 49 * 60 + 37, 784111777);
	CHECK_INT(days_from_civil(2000, 3, 1) - days_from_civil(2000, 2, 28), 2);
	CHECK_INT(days_from_civil(2100, 3, 1) - days_from_civil(2100, 2, 28), 1);
	CHECK_INT(days_from_civil(2050, 1, 1) - days_from_civil(2049, 12, 31), 1);
	CHECK_INT(days_from_civil(1969, 12, 31), -1);

	set_context("retry_after_ms garbage");
	CHECK_INT(retry_after_ms("", ""), -1);
	CHECK_INT(retry_after_ms("soon", ""), -1);
	CHECK_INT(retry_after_ms("-1", ""), -1);
	CHECK_INT(retry_after_ms("1.5", ""), -1);
	CHECK_INT(retry_after_ms("12 ", ""), -1);
	CHECK_INT(retry_after_ms("0x10", ""), -1);
	CHECK_INT(retry_after_ms("Sun, 06 Foo 1994 08:49:37 GMT", ""), -1);
	CHECK_INT(retry_after_ms("Sun, 06 nov 1994 08:49:37 GMT", ""), -1);
	CHECK_INT(retry_after_ms("Sun, 06 anF 1994 08:49:37 GMT", ""), -1);
	CHECK_INT(retry_after_ms("Sunday, 06-Nov-94 08:49:37 GMT", ""), -1);
	CHECK_INT(retry_after_ms("Sun; 06 Nov 1994 08:49:37 GMT", ""), -1);
	CHECK_INT(retry_after_ms("Sun, 06 Nov 1994", ""), -1);
	CHECK_INT(retry_after_ms("Sun, 06 Nov 1994 08:49:37 UTC", ""), -1);
	CHECK_INT(retry_after_ms("Sun, 6 Nov 1994 08:49:37 GMT", ""), -1);
	CHECK_INT(retry_after_ms("Sun, 00 Nov 1994 08:49:37 GMT", ""), -1);
	CHECK_INT(retry_after_ms("Sun, 06 Nov 1994 08-49-37 GMT", ""), -1);
	CHECK_INT(retry_after_ms("Sun, 06 Nov 19x4 08:49:37 GMT", ""), -1);
	set_context("retry_after_ms far future");
	CHECK(retry_after_ms("Fri, 31 Dec 9999 23:59:59 GMT", "") > 240000000000000LL);
	/* past 2038 and 2106, where 32-bit time_t and uint32 seconds end */
	set_context("retry_after_ms after 2038");
	ms = retry_after_ms("Tue, 19 Jan 2038 03:14:08 GMT", "");
	check(llabs(ms - (2147483648LL - (long long)time(NULL)) * 1000) <= 2000, __FILE__, __LINE__,
	      "%lld ms to 2^31 s", ms);
	ms = retry_after_ms("Sun, 07 Feb 2106 06:28:16 GMT", "");
	check(llabs(ms - (4294967296LL - (long long)time(NULL)) * 1000) <= 2000, __FILE__, __LINE__,
	      "%lld ms to 2^32 s", ms);
	context[0] = 0;
}

/* ===================== 9. messages ===================== */

/* What info(s) writes on stderr. */
static const char *info_text(const char *s)
{
	static struct buf b;
	int saved = dup(2), fd = open(tpath("stderr.txt"), O_WRONLY | O_CREAT | O_TRUNC, 0600);

	fflush(stderr);
	dup2(fd, 2);
	close(fd);
	info("%s", s);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	return slurp("stderr.txt", &b) ? NULL : b.p;
}

static void test_info(void)
{
	set_context("info: only printable ASCII reaches the terminal");
	CHECK_STR(info_text("a\x1b[31mb\x7f\xc2\x9b" "c\xe2\x80\xae" "d\xe2\x81\xa0" "e\xf3\xa0\x81\x81"
			    "f\xc3\xa9" "g\xff~ h"), "a?[31mb???c???d???e????f??g?~ h\n");
	context[0] = 0;
}

/* ===================== 8. JSON ===================== */

/*
 * json_parse over an exact-size heap copy of s (see exact_copy). Tokens
 * point into the copy, which lives until the next call or json_done().
 */
static char *json_copy;

static int parse_len(struct json *j, const char *s, size_t len)
{
	free(json_copy);
	json_copy = (char *)exact_copy(s, len);
	return json_parse(j, json_copy, len);
}

static int parse(struct json *j, const char *s)
{
	return parse_len(j, s, strlen(s));
}

static void json_done(struct json *j)
{
	json_free(j);
	free(json_copy);
	json_copy = NULL;
}

/* The bytes of token t as written in the document. */
static const char *tok_text(const struct json *j, int t)
{
	static char text[256];

	snprintf(text, sizeof text, "%.*s", j->t[t].end - j->t[t].start, j->s + j->t[t].start);
	return text;
}

/* n containers nested: n times open, then inner, then n times close. */
static void nest(struct buf *b, int n, const char *open, const char *inner, const char *close)
{
	int k;

	b->len = 0;
	for (k = 0; k < n; k++)
		buf_str(b, open);
	buf_str(b, inner);
	for (k = 0; k < n; k++)
		buf_str(b, close);
}

static void test_json_valid(void)
{
	static const char *const valid[] = {
		"{}", "[]", "\"\"", "0", "-0", "1.5e+10", "-1.25E-3", "123", "0.0", "1E5", "2e-0",
		"true", "false", "null", " \t\r\n[ 1 , 2 ]\r\n ", "[[[]]]", "[{}, [], \"\"]",
		"{\"a\":{\"b\":[1,{\"c\":\"deep\"}]},\"d\":-0}",
		"\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "\"\\u00e9\\u00E9\"", "\"\\ud83d\\ude00\"",
		"\"h\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf\"", "\"\x7f\"", "\"\\uFFFF\"",
	};
	static const struct {
		int type;
		const char *text;
	} walk[] = {
		{ J_NUM, "1" }, { J_ARR, "[2, 3]" }, { J_OBJ, "{\"a\": [4]}" }, { J_STR, "x" },
		{ J_TRUE, "true" }, { J_FALSE, "false" }, { J_NULL, "null" }, { J_NUM, "-0" },
		{ J_NUM, "1.5e+10" },
	};
	struct json j = { 0 };
	char out[64];
	size_t k;
	int t, n, a, b;

	for (k = 0; k < sizeof valid / sizeof valid[0]; k++) {
		set_context("JSON valid: %s", valid[k]);
		CHECK_INT(parse(&j, valid[k]), 0);
	}

	/* escapes, a surrogate pair and raw UTF-8 decode to the right bytes */
	set_context("JSON strings");
	if (CHECK_INT(parse(&j, "[\"\\\"\\\\\\/\\b\\f\\n\\r\\t\", \"\\u00e9\", \"\\ud83d\\ude00\","
			   " \"h\xc3\xa9\xf0\x9f\x98\x80\", \"\\u0041\\u20AC\"]"), 0)) {
		CHECK_INT(j.n, 6);
		CHECK_INT(json_str(&j, 1, out, sizeof out), 0);
		CHECK_STR(out, "\"\\/\b\f\n\r\t");
		CHECK_INT(json_str(&j, 2, out, sizeof out), 0);
		CHECK_STR(out, "\xc3\xa9");
		CHECK_INT(json_str(&j, 3, out, sizeof out), 0);
		CHECK_STR(out, "\xf0\x9f\x98\x80");
		CHECK_INT(json_str(&j, 4, out, sizeof out), 0);
		CHECK_STR(out, "h\xc3\xa9\xf0\x9f\x98\x80");
		CHECK_INT(json_str(&j, 5, out, sizeof out), 0);
		CHECK_STR(out, "A\xe2\x82\xac");
		CHECK_INT(json_str(&j, 0, out, sizeof out), -1);    /* an array is no string */
		CHECK_INT(json_str(&j, -1, out, sizeof out), -1);
	}

	/* an array walked element by element through .next */
	set_context("JSON walk");
	if (CHECK_INT(parse(&j, "[1, [2, 3], {\"a\": [4]}, \"x\", true, false, null, -0, 1.5e+10]"), 0)) {
		CHECK_INT(j.t[0].type, J_ARR);
		CHECK_INT(j.t[0].next, j.n);
		for (n = 0, t = 1; t < j.t[0].next && n < 20; t = j.t[t].next, n++) {
			if (n >= (int)(sizeof walk / sizeof walk[0]))
				continue;
			CHECK_INT(j.t[t].type, walk[n].type);
			CHECK_STR(tok_text(&j, t), walk[n].text);
		}
		CHECK_INT(n, sizeof walk / sizeof walk[0]);
		CHECK_INT(t, j.n);
	}

	/* lookups in nested objects */
	set_context("JSON lookups");
	if (CHECK_INT(parse(&j, "{\"a\": {\"b\": [1, {\"c\": \"deep\"}]}, \"d\": -0, \"e\": 1.5e+10,"
			   " \"s\": \"str\", \"t\": true, \"n\": null}"), 0)) {
		CHECK_INT(j.t[0].type, J_OBJ);
		a = json_get(&j, 0, "a");
		CHECK(a > 0 && j.t[a].type == J_OBJ);
		b = json_get(&j, a, "b");
		CHECK(b > 0 && j.t[b].type == J_ARR);
		t = b > 0 ? j.t[b + 1].next : -1;            /* the second element of "b" */
		CHECK_STR(json_get_str(&j, t, "c", out, sizeof out), "deep");
		CHECK_INT(json_get(&j, 0, "c"), -1);          /* only in a nested object */
		t = json_get(&j, 0, "d");
		CHECK(t > 0 && j.t[t].type == J_NUM && !strcmp(tok_text(&j, t), "-0"));
		t = json_get(&j, 0, "e");
		CHECK(t > 0 && j.t[t].type == J_NUM && !strcmp(tok_text(&j, t), "1.5e+10"));
		CHECK_STR(json_get_str(&j, 0, "s", out, sizeof out), "str");
		CHECK(json_get_str(&j, 0, "e", out, sizeof out) == NULL);   /* a number */
		CHECK(json_get_str(&j, 0, "t", out, sizeof out) == NULL);
		CHECK(json_get_str(&j, 0, "missing", out, sizeof out) == NULL);
		t = json_get(&j, 0, "n");
		CHECK(t > 0 && j.t[t].type == J_NULL);
		CHECK_INT(json_get(&j, 0, "missing"), -1);
		CHECK_INT(json_get(&j, b, "c"), -1);          /* an array is no object */
		CHECK_INT(json_get(&j, -1, "a"), -1);
	}

	/* a duplicated key, even when spelled differently, makes the lookup fail */
	set_context("JSON duplicate keys");
	if (CHECK_INT(parse(&j, "{\"a\": 1, \"b\": 2, \"a\": 3}"), 0)) {
		CHECK_INT(json_get(&j, 0, "a"), -1);
		CHECK(json_get(&j, 0, "b") > 0);
	}
	if (CHECK_INT(parse(&j, "{\"type\": \"x\", \"\\u0074ype\": \"y\"}"), 0))
		CHECK(json_get_str(&j, 0, "type", out, sizeof out) == NULL);
	set_context("JSON non-objects");
	if (CHECK_INT(parse(&j, "[\"a\", 1]"), 0))
		CHECK_INT(json_get(&j, 0, "a"), -1);
	if (CHECK_INT(parse(&j, "\"a\""), 0))
		CHECK_INT(json_get(&j, 0, "a"), -1);
	json_done(&j);
	context[0] = 0;
}

static void test_json_invalid(void)
{
	static const char *const invalid[] = {
		"", " ", "{} x", "[1] [2]", "[1,]", "{\"a\":1,}", "[,1]", "01", "-01", "1.", "-", ".5",
		"+1", "1e", "1e+", "0x1", "1.5.2", "[1 2]", "{\"a\" 1}", "{a:1}", "{\"a\":}", "{1:2}",
		"\"abc", "\"a\\\"", "\"a\\", "[\"a]", "\"a\x01\"", "\"\t\"", "\"a\nb\"",
		"\"\xc0\x80\"", "\"\xc1\xbf\"", "\"\xe0\x80\x80\"", "\"\xed\xa0\x80\"", "\"\xf0\x80\x80\x80\"",
		"\"\xf4\x90\x80\x80\"", "\"\xf5\x80\x80\x80\"", "\"\xff\"", "\"\xc3\"", "\"\xe2\x82\"",
		"\"\x80\"", "\"\\ud83d\"", "\"\\ud83dx\"", "\"\\ud83d\\u0041\"", "\"\\ud83d\\ud83d\"",
		"\"\\ude00\"", "\"\\ude00\\ud83d\"", "\"\\u0000\"", "\"\\x41\"", "\"\\u12\"", "\"\\u12g4\"",
		"\"\\'\"", "\"\\U00e9\"", "tru", "nul", "True", "NULL", "NaN", "Infinity", "-Infinity",
		"'a'", "[", "]", "{", "}", "{\"a\":1", "\"a\" : 1", "[1]]", "{\"a\":1}}",
		"<html><body><h1>502 Bad Gateway</h1></body></html>", "HTTP/1.1 200 OK", "\xef\xbb\xbf{}",
		/* the edges of each range: lone low surrogates, a high one before no low one */
		"\"\\udc00\"", "\"\\udfff\"", "\"\\ud83d\\udbff\"", "\"\\udbff\\ue000\"",
		/* a continuation byte that is none, in the third and the fourth place */
		"\"\xe2\x82\xc0\"", "\"\xf0\x9f\x98\xff\"", "\"\xf0\x9f\xc0\x80\"",
		/* a backslash before a raw control, and the last control, raw */
		"\"a\\\nb\"", "\"\\\t\"", "\"\\\r\"", "\"\x1f\"",
		/* a high surrogate before a low one's digits without their backslash, or u */
		"\"\\ud83dxude00\"", "\"\\ud83d\\xde00\"",
		/* the end right after a member name */
		"{\"a\"",
	};
	struct json j = { 0 };
	struct buf b = { 0 };
	size_t k;

	for (k = 0; k < sizeof invalid / sizeof invalid[0]; k++) {
		set_context("JSON invalid: %s", invalid[k]);
		CHECK_INT(parse(&j, invalid[k]), -1);
	}
	set_context("JSON invalid: NUL bytes");
	CHECK_INT(parse_len(&j, S("[1]\0")), -1);
	CHECK_INT(parse_len(&j, S("\"a\0b\"")), -1);
	CHECK_INT(parse_len(&j, S("\0")), -1);
	CHECK_INT(parse_len(&j, S("[1,\0 2]")), -1);

	/*
	 * Nesting: the outermost value is at depth 0 and a container at depth
	 * MAX_DEPTH is refused, so MAX_DEPTH nested levels are the most allowed.
	 */
	set_context("JSON nesting of MAX_DEPTH arrays");
	nest(&b, MAX_DEPTH, "[", "1", "]");
	CHECK_INT(parse_len(&j, b.p, b.len), 0);
	set_context("JSON nesting of MAX_DEPTH + 1 arrays");
	nest(&b, MAX_DEPTH + 1, "[", "1", "]");
	CHECK_INT(parse_len(&j, b.p, b.len), -1);
	set_context("JSON nesting of MAX_DEPTH objects");
	nest(&b, MAX_DEPTH, "{\"a\":", "1", "}");
	CHECK_INT(parse_len(&j, b.p, b.len), 0);
	set_context("JSON nesting of MAX_DEPTH + 1 objects");
	nest(&b, MAX_DEPTH + 1, "{\"a\":", "1", "}");
	CHECK_INT(parse_len(&j, b.p, b.len), -1);
	/* arrays and objects alternating (MAX_DEPTH is even) */
	set_context("JSON nesting of MAX_DEPTH, mixed");
	nest(&b, MAX_DEPTH / 2, "[{\"a\":", "1", "}]");
	CHECK_INT(parse_len(&j, b.p, b.len), 0);
	set_context("JSON nesting of MAX_DEPTH + 1, mixed");
	nest(&b, MAX_DEPTH / 2, "[{\"a\":", "[]", "}]");
	CHECK_INT(parse_len(&j, b.p, b.len), -1);
	set_context("JSON 100000 '['");
	b.len = 0;
	for (k = 0; k < 100000; k++)
		buf_add(&b, "[", 1);
	CHECK_INT(parse_len(&j, b.p, b.len), -1);
	set_context("JSON 60000 '[' and ']'");
	nest(&b, 60000, "[", "", "]");
	CHECK_INT(parse_len(&j, b.p, b.len), -1);

	/* MAX_TOKENS values: an array and its elements are one token each */
	set_context("JSON MAX_TOKENS values");
	b.len = 0;
	buf_str(&b, "[0");
	for (k = 2; k < MAX_TOKENS; k++)
		buf_str(&b, ",0");
	buf_str(&b, "]");
	if (CHECK_INT(parse_len(&j, b.p, b.len), 0))
		CHECK_INT(j.n, MAX_TOKENS);
	set_context("JSON MAX_TOKENS + 1 values");
	b.p[b.len - 1] = ',';
	buf_str(&b, "0]");
	CHECK_INT(parse_len(&j, b.p, b.len), -1);
	set_context("JSON MAX_TOKENS + 1 values in an object");
	b.len = 0;
	buf_str(&b, "{\"k\":0");
	for (k = 2; k < MAX_TOKENS / 2 + 1; k++)
		buf_str(&b, ",\"k\":0");
	buf_str(&b, "}");
	CHECK_INT(parse_len(&j, b.p, b.len), -1);
	set_context("JSON MAX_TOKENS + 1 values, the last a container");
	b.len = 0;
	buf_str(&b, "[[]");
	for (k = 2; k < MAX_TOKENS + 1; k++)
		buf_str(&b, ",[]");
	buf_str(&b, "]");
	CHECK_INT(parse_len(&j, b.p, b.len), -1);
	set_context("JSON small document after a large one");
	CHECK_INT(parse(&j, "{\"a\":\"b\"}"), 0);
	CHECK_INT(j.n, 3);

	/* a whole document of MAX_BODY bytes is fine, one byte more is not */
	set_context("JSON of MAX_BODY bytes");
	b.len = 0;
	buf_str(&b, "\"");
	for (k = 2; k < MAX_BODY; k++)
		buf_add(&b, "a", 1);
	buf_str(&b, "\"");
	CHECK_INT(parse_len(&j, b.p, b.len), 0);
	set_context("JSON of MAX_BODY + 1 bytes");
	buf_str(&b, " ");
	CHECK_INT(parse_len(&j, b.p, b.len), -1);

	buf_free(&b);
	json_done(&j);
	context[0] = 0;
}

/* True if the bytes from p to p + n all still hold the fill byte 'Z'. */
static int untouched(const char *p, size_t n)
{
	size_t k;

	for (k = 0; k < n; k++)
		if (p[k] != 'Z')
			return 0;
	return 1;
}

static void test_json_small_buffers(void)
{
	struct json j = { 0 };
	char out[16], big[64];

	/* json_str must refuse a buffer one byte too small, writing nothing past it */
	set_context("json_str into small buffers");
	if (!CHECK_INT(parse(&j, "[\"abcdef\", \"ab\\u00e9\", \"\", \"\\ud83d\\ude00\"]"), 0))
		return;
	memset(out, 'Z', sizeof out);
	CHECK_INT(json_str(&j, 1, out, 6), -1);       /* "abcdef" needs 7 bytes */
	CHECK(untouched(out + 6, sizeof out - 6));
	CHECK_INT(json_str(&j, 1, out, 7), 0);
	CHECK_STR(out, "abcdef");
	memset(out, 'Z', sizeof out);
	CHECK_INT(json_str(&j, 2, out, 4), -1);       /* "ab" + 2 bytes of e-acute: 5 bytes */
	CHECK(untouched(out + 4, sizeof out - 4));
	memset(out, 'Z', sizeof out);
	CHECK_INT(json_str(&j, 2, out, 3), -1);       /* e-acute would straddle the end */
	CHECK(untouched(out + 3, sizeof out - 3));
	CHECK_INT(json_str(&j, 2, out, 5), 0);
	CHECK_STR(out, "ab\xc3\xa9");
	memset(out, 'Z', sizeof out);
	CHECK_INT(json_str(&j, 4, out, 4), -1);       /* 4 bytes of UTF-8 and the NUL */
	CHECK(untouched(out + 4, sizeof out - 4));
	CHECK_INT(json_str(&j, 4, out, 5), 0);
	CHECK_STR(out, "\xf0\x9f\x98\x80");
	/* the empty string needs one byte: with none, nothing may be written */
	memset(out, 'Z', sizeof out);
	CHECK_INT(json_str(&j, 3, out, 0), -1);
	CHECK(untouched(out, sizeof out));
	CHECK_INT(json_str(&j, 3, out, 1), 0);
	CHECK_STR(out, "");
	json_done(&j);
	/* a problem with subproblems cut at the buffer's end, nothing written past it */
	set_context("problem_text into a small buffer");
	if (!CHECK_INT(parse(&j, "{\"type\":\"t\",\"detail\":\"d\",\"subproblems\":["
			     "{\"type\":\"u\",\"identifier\":{\"value\":\"a.test\"}},7]}"), 0))
		return;
	memset(out, 'Z', sizeof out);
	CHECK_STR(problem_text(&j, 0, out, 14), "t: d; a.test:");
	CHECK(untouched(out + 14, sizeof out - 14));
	CHECK_STR(problem_text(&j, 0, big, sizeof big), "t: d; a.test: u; (no identifier):"
		  " (no problem type)");
	json_done(&j);
	context[0] = 0;
}

/* json_item walks an array's own elements, the nested ones skipped, and nothing else. */
static void test_json_item(void)
{
	struct json j = { 0 };
	int k;

	set_context("json_item");
	if (!CHECK_INT(parse(&j, "{\"a\":[1,[2,{\"b\":3}],\"x\"],\"e\":[],\"o\":{\"c\":4}}"), 0))
		return;
	k = json_get(&j, 0, "a");
	CHECK_INT(json_item(&j, k, -1), k + 1);                  /* 1 */
	CHECK_INT(json_item(&j, k, k + 1), k + 2);               /* [2,{"b":3}] */
	CHECK_INT(json_item(&j, k, k + 2), k + 7);               /* "x", past 2, {, "b", 3 */
	CHECK_INT(json_item(&j, k, k + 7), -1);
	CHECK_INT(json_item(&j, json_get(&j, 0, "e"), -1), -1);  /* an empty array */
	CHECK_INT(json_item(&j, json_get(&j, 0, "o"), -1), -1);  /* an object is no array */
	CHECK_INT(json_item(&j, json_get(&j, 0, "none"), -1), -1);
	CHECK_INT(json_item(&j, k + 2, k + 3), k + 4);           /* {"b":3}, in the inner one */
	CHECK_INT(json_item(&j, k + 2, k + 4), -1);
	json_done(&j);
	context[0] = 0;
}

static void test_json_write(void)
{
	static const char tricky[] = "a\"b\\c\nd\x01" "e\x7f" "f\xc3\xa9/";
	struct json j = { 0 };
	struct buf b = { 0 };
	char all[128], out[512];
	int k;

	set_context("buf_json_str");
	buf_json_str(&b, "", tricky);
	CHECK_STR(b.p, "\"a\\\"b\\\\c\\u000ad\\u0001e\\u007ff\xc3\xa9/\"");
	if (CHECK_INT(parse_len(&j, b.p, b.len), 0)) {
		CHECK_INT(json_str(&j, 0, out, sizeof out), 0);
		CHECK_STR(out, tricky);
	}
	/* every ASCII byte but NUL survives the round trip */
	for (k = 1; k < 128; k++)
		all[k - 1] = (char)k;
	all[127] = 0;
	b.len = 0;
	buf_json_str(&b, "", all);
	if (CHECK_INT(parse_len(&j, b.p, b.len), 0)) {
		CHECK_INT(json_str(&j, 0, out, sizeof out), 0);
		CHECK_STR(out, all);
	}
	b.len = 0;
	buf_json_str(&b, "", "");
	CHECK_STR(b.p, "\"\"");
	b.len = 0;
	buf_json_str(&b, ",\"k\":", "v");        /* what comes before it, as it is */
	CHECK_STR(b.p, ",\"k\":\"v\"");
	buf_free(&b);
	json_done(&j);
	context[0] = 0;
}

/* ===================== 7. PEM ===================== */

/* pem_next of text from pos 0: its result, with the label and the bytes as a string. */
static int pem_of(const char *text, char *label, size_t cap, struct buf *der, size_t *pos)
{
	struct buf in = { 0 };
	int r;

	*pos = 0;
	buf_str(&in, text);
	r = pem_next(&in, pos, label, cap, der);
	buf_add(der, "", 0);
	buf_free(&in);
	return r;
}

static void test_pem(void)
{
	static const char block[] = "-----BEGIN X-----\nZm9v\nYmFy\n-----END X-----\n";
	struct buf der = { 0 };
	char label[16];
	size_t pos;

	set_context("pem_next");
	CHECK_INT(pem_of(block, label, sizeof label, &der, &pos), 1);
	CHECK_STR(label, "X");
	CHECK_STR(der.p, "foobar");
	CHECK_INT(pos, strlen(block) - 1);
	CHECK_INT(pem_of("comment -----BEGIN X-----\n-----BEGIN Y Z-----\r\nZm9v\r\n-----END Y Z-----\r\n",
			 label, sizeof label, &der, &pos), 1);   /* text before it skipped */
	CHECK_STR(label, "Y Z");
	CHECK_STR(der.p, "foo");
	CHECK_INT(pem_of("-----BEGIN ABCDEFGHIJKLMNO-----\nZm9v\n-----END ABCDEFGHIJKLMNO-----\n",
			 label, sizeof label, &der, &pos), 1);   /* a label of cap - 1 */
	CHECK_INT(pem_of("no block here\n", label, sizeof label, &der, &pos), 0);
	CHECK_INT(pem_of("", label, sizeof label, &der, &pos), 0);
	CHECK_INT(pem_of("-----BEGIN X-----\nZm9v\n", label, sizeof label, &der, &pos), -1);
	CHECK_INT(pem_of("-----BEGIN X-----\nZm9v\n-----END Y-----\n", label, sizeof label, &der, &pos), -1);
	CHECK_INT(pem_of("-----BEGIN X-----\nZm9v-----END X-----\n", label, sizeof label, &der, &pos), -1);
	CHECK_INT(pem_of("-----BEGIN X----\nZm9v\n-----END X----\n", label, sizeof label, &der, &pos), -1);
	CHECK_INT(pem_of("-----BEGIN X-----\nProc-Type: 4,ENCRYPTED\nZm9v\n-----END X-----\n",
			 label, sizeof label, &der, &pos), -1);
	CHECK_INT(pem_of("-----BEGIN LABEL LONGER THAN ITS CAP-----\nZm9v\n-----END LABEL LONGER THAN ITS CAP-----\n",
			 label, sizeof label, &der, &pos), -1);
	CHECK_INT(pem_of("-----BEGIN X-----\nZm9v\n-----END X", label, sizeof label, &der, &pos), -1);
	/* a UTF-8 byte order mark before the first block, as Windows' editors write: only there */
	CHECK_INT(pem_of("\xEF\xBB\xBF-----BEGIN X-----\nZm9v\n-----END X-----\n", label, sizeof label,
			 &der, &pos), 1);
	CHECK_STR(der.p, "foo");
	CHECK_INT(pem_of("\xEF\xBB-----BEGIN X-----\nZm9v\n-----END X-----\n", label, sizeof label,
			 &der, &pos), 0);
	CHECK_INT(pem_of("a\n\xEF\xBB\xBF-----BEGIN X-----\nZm9v\n-----END X-----\n", label,
			 sizeof label, &der, &pos), 0);
	CHECK_INT(pem_of("\xEF\xBB\xBFtext -----BEGIN X-----\nZm9v\n-----END X-----\n", label,
			 sizeof label, &der, &pos), 0);       /* after it, a line start as ever */
	context[0] = 0;
	buf_free(&der);
}

/* Every certificate of the system's CA bundle, decoded by pem_next and by Python. */
static void test_pem_bundle(void)
{
	static const char bundle[] = "/etc/ssl/certs/ca-certificates.crt";
	struct buf in = { 0 }, der = { 0 }, all = { 0 }, want = { 0 };
	size_t pos = 0;
	char label[32];
	int n = 0;

	set_context("pem_next on %s", bundle);
	if (access(bundle, R_OK) || !CHECK_INT(sh("python3 -c 'import re, ssl, sys\n"
		"for b in re.findall(\"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----\","
		" open(\"%s\").read(), re.S):\n"
		"    sys.stdout.buffer.write(ssl.PEM_cert_to_DER_cert(b))' > bundle.der", bundle), 0))
		return;
	xread_file(bundle, "CA file", &in);
	while (pem_next(&in, &pos, label, sizeof label, &der) == 1 && !strcmp(label, "CERTIFICATE")) {
		buf_add(&all, der.p, der.len);
		n++;
	}
	CHECK_INT(pos, in.len - 1);          /* the whole file, up to its last newline */
	CHECK_INT(slurp("bundle.der", &want), 0);
	CHECK_MEM(all.p, all.len, want.p, want.len);
	CHECK(n > 100);
#ifndef UNIT_NO_BEARSSL
	xload_trust_anchors(bundle);
	CHECK_INT(n_anchors, n);
	free_trust_anchors();
#endif
	context[0] = 0;
	buf_free(&in);
	buf_free(&der);
	buf_free(&all);
	buf_free(&want);
}

/* ===================== 7. DER ===================== */

/* der_next on bytes: its tag or -1. */
static int tag_of(const char *bytes, size_t len)
{
	unsigned char *p = exact_copy(bytes, len);
	struct der in = { p, len }, v;
	int tag = der_next(&in, &v);

	free(p);
	return tag;
}

static void test_der_next(void)
{
	char name[300];

	set_context("der_next edges");
	CHECK_INT(tag_of("\x30\x00", 2), 0x30);
	CHECK_INT(tag_of("\x30\x83\x00\x00\x00", 5), 0x30);     /* 3 length bytes: read */
	CHECK_INT(tag_of("\x30\x84\x00\x00\x00\x00", 6), -1);   /* 4: not */
	memset(name, 0, sizeof name);
	name[0] = 0x30;
	name[1] = (char)0x80;                                    /* indefinite, though */
	CHECK_INT(tag_of(name, 2 + 0x80), -1);                   /* 0x80 bytes follow */
	name[1] = 0x7F;
	CHECK_INT(tag_of(name, 2 + 0x7F), 0x30);
	CHECK_INT(tag_of("\x30\x82\x01", 3), -1);               /* length cut short */
	CHECK_INT(tag_of("\x30\x81", 2), -1);
	CHECK_INT(tag_of("\x1F\x00", 2), -1);                   /* high tag number form */
	CHECK_INT(tag_of("\x3F\x00", 2), -1);
	context[0] = 0;
}

/* ===================== 7. private keys ===================== */

/*
 * The key files of the temp dir that the keys, jwk, jws, load and generate
 * groups use, each made by an openssl command: make_keys() makes them once.
 */
static const struct {
	const char *file;      /* in the temp dir */
	const char *make;      /* the command that writes it */
	const char *alg;       /* the expected alg, NULL if the key must be refused */
} TEST_KEYS[] = {
	{ "rsa2048.pem", "openssl genrsa -traditional -out rsa2048.pem 2048", "RS256" },
	{ "rsa2048.der", "openssl rsa -in rsa2048.pem -traditional -outform DER -out rsa2048.der", "RS256" },
	{ "rsa2048-p8.pem", "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa2048-p8.pem", "RS256" },
	{ "rsa2048-e3.pem", "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 "
	  "-pkeyopt rsa_keygen_pubexp:3 -out rsa2048-e3.pem", "RS256" },
	/* e = 0x800001: its top bit set, so DER has 00 80 00 01 and the JWK must drop the 00 */
	{ "rsa2048-e800001.pem", "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 "
	  "-pkeyopt rsa_keygen_pubexp:8388609 -out rsa2048-e800001.pem", "RS256" },
	{ "rsa4096.pem", "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:4096 -out rsa4096.pem", "RS256" },
	{ "ec256.pem", "openssl ecparam -name prime256v1 -genkey -noout -out ec256.pem", "ES256" },
	{ "ec256.der", "openssl ec -in ec256.pem -outform DER -out ec256.der", "ES256" },
	{ "ec256-p8.pem", "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ec256-p8.pem", "ES256" },
	/* with an EC PARAMETERS block first, which load_der must skip */
	{ "ec256-params.pem", "openssl ecparam -name prime256v1 -genkey -out ec256-params.pem", "ES256" },
	{ "ec384.pem", "openssl ecparam -name secp384r1 -genkey -noout -out ec384.pem", "ES384" },
	{ "rsa1024.pem", "openssl genrsa -traditional -out rsa1024.pem 1024", NULL },
	{ "ec521.pem", "openssl ecparam -name secp521r1 -genkey -noout -out ec521.pem", NULL },
};
#define N_TEST_KEYS (sizeof TEST_KEYS / sizeof TEST_KEYS[0])

static int key_made[N_TEST_KEYS];       /* 1 once TEST_KEYS[i] is made */

/* Makes the key files, once per run: the first group that needs them counts these checks. */
static void make_keys(void)
{
	static int done;
	size_t i;

	if (done)
		return;
	done = 1;
	for (i = 0; i < N_TEST_KEYS; i++) {
		set_context("key %s", TEST_KEYS[i].file);
		key_made[i] = CHECK_INT(sh("%s", TEST_KEYS[i].make), 0) && CHECK(file_exists(TEST_KEYS[i].file));
	}
	context[0] = 0;
}

/*
 * Every prefix of a key's DER must be refused, and no single flipped bit
 * may crash the decoder or the setup (a flipped key may still be accepted).
 */
static void test_key_der_robustness(const char *name)
{
	static struct key k;
	struct buf der = { 0 };
	size_t len, bad_prefix = 0, i;
	int prefix_ok = 1;
	uint32_t rnd = 12345;

	set_context("key DER robustness: %s", name);
	if (!CHECK_INT(slurp(name, &der), 0) || !CHECK(der.len > 0)) {
		buf_free(&der);
		return;
	}
	for (len = 0; len < der.len; len++) {
		unsigned char *p = exact_copy(der.p, len);

		if (!key_from_der(&k, p, len) && prefix_ok) {
			prefix_ok = 0;
			bad_prefix = len;
		}
		free(p);
	}
	check(prefix_ok, __FILE__, __LINE__, "a prefix of %zu bytes was accepted as a key", bad_prefix);
	for (i = 0; i < der.len; i++) {
		unsigned char *p = exact_copy(der.p, der.len);

		rnd = rnd * 1103515245 + 12345;          /* a fixed sequence: runs repeat */
		p[i] ^= (unsigned char)(1 << ((rnd >> 16) % 8));
		key_from_der(&k, p, der.len);    /* either answer is fine: no crash */
		free(p);
	}
	/* and the decoder, shared by all keys, still reads the real key afterwards */
	CHECK(key_from_der(&k, der.p, der.len) == NULL);
	buf_free(&der);
	context[0] = 0;
}

/*
 * load_der of a file of the temp dir into b. b is freed first: for a DER
 * file load_der replaces *der wholesale, so whatever b held would leak.
 */
static void load(const char *name, const char *what, const char *const *labels, struct buf *b)
{
	buf_free(b);
	xload_der(tpath(name), what, labels, b);
}

/*
 * Key file i of TEST_KEYS decoded into k, for the jwk and jws groups (the
 * keys group checks the decoding): 1, or 0 if the file was not made or the
 * key was refused, which is a failure here too.
 */
static int key_of(size_t i, struct key *k, struct buf *der)
{
	const char *err;

	if (!key_made[i])
		return 0;
	load(TEST_KEYS[i].file, "account key", KEY_LABELS, der);
	err = key_from_der(k, der->p, der->len);
	if (err)
		check(0, __FILE__, __LINE__, "refused: %s", err);
	return !err;
}

static void test_keys(void)
{
	static struct key k;
	static char jwk_pem[1024];
	struct buf der = { 0 };
	const char *err;
	size_t i;

	make_keys();
	for (i = 0; i < N_TEST_KEYS; i++) {
		if (!key_made[i])
			continue;
		set_context("key %s", TEST_KEYS[i].file);
		load(TEST_KEYS[i].file, "account key", KEY_LABELS, &der);
		err = key_from_der(&k, der.p, der.len);
		if (!TEST_KEYS[i].alg) {
			CHECK(err != NULL);
			continue;
		}
		if (!check(err == NULL, __FILE__, __LINE__, "refused: %s", err ? err : ""))
			continue;
		CHECK_STR(k.alg, TEST_KEYS[i].alg);
		CHECK_INT(k.type, TEST_KEYS[i].alg[0] == 'R' ? BR_KEYTYPE_RSA : BR_KEYTYPE_EC);
		/* a DER file holds the same key as the PEM file it was made from */
		if (strstr(TEST_KEYS[i].file, ".pem"))
			snprintf(jwk_pem, sizeof jwk_pem, "%s", k.jwk);
		else
			CHECK_STR(k.jwk, jwk_pem);
	}
	buf_free(&der);

	test_key_der_robustness("ec256.der");
	test_key_der_robustness("rsa2048.der");

	set_context("keys that are not keys");
	CHECK(key_from_der(&k, "", 0) != NULL);
	CHECK(key_from_der(&k, "\x30\x03\x02\x01\x00", 5) != NULL);
	CHECK(key_from_der(&k, "-----BEGIN", 10) != NULL);

	context[0] = 0;
}

/* ===================== 7. JWK and thumbprints ===================== */

/* The RFC 7638 section 3.1 example key: its modulus and its thumbprint. */
#define RFC7638_N \
	"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn" \
	"64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91" \
	"CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
#define RFC7638_THUMBPRINT "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"

static void test_thumbprint_rfc7638(void)
{
	static const unsigned char e[] = { 1, 0, 1 };
	static const char want[] = "{\"e\":\"AQAB\",\"kty\":\"RSA\",\"n\":\"" RFC7638_N "\"}";
	static struct key k;
	unsigned char n[256];
	long nlen = b64url_decode(RFC7638_N, strlen(RFC7638_N), n, sizeof n);

	set_context("RFC 7638 thumbprint");
	CHECK_INT(nlen, 256);
	if (nlen != 256)
		return;
	memset(&k, 0, sizeof k);
	k.type = BR_KEYTYPE_RSA;
	k.n.p = n;
	k.n.len = (size_t)nlen;
	k.e.p = e;
	k.e.len = sizeof e;
	key_jwk(&k);
	CHECK_STR(k.jwk, want);
	CHECK_STR(k.thumbprint, RFC7638_THUMBPRINT);
	context[0] = 0;
}

/* A public key taken back out of a JWK that acme-tiny wrote. */
struct pubkey {
	int ec;                        /* 0 for RSA */
	int curve;                     /* BR_EC_secp256r1 or BR_EC_secp384r1 */
	unsigned char n[512], e[8], q[97];
	size_t nlen, elen, qlen;
};

/* Fills pk from jwk; 0, or -1 if it is not an RSA or P-256/P-384 JWK. */
static int pubkey_from_jwk(const char *jwk, struct pubkey *pk)
{
	struct json j = { 0 };
	char kty[8], crv[8], a[1024], b[1024];
	long la, lb;
	size_t size;
	int r = -1;

	memset(pk, 0, sizeof *pk);
	if (json_parse(&j, jwk, strlen(jwk)) || !json_get_str(&j, 0, "kty", kty, sizeof kty))
		goto out;
	if (!strcmp(kty, "RSA")) {
		if (!json_get_str(&j, 0, "n", a, sizeof a) || !json_get_str(&j, 0, "e", b, sizeof b))
			goto out;
		la = b64url_decode(a, strlen(a), pk->n, sizeof pk->n);
		lb = b64url_decode(b, strlen(b), pk->e, sizeof pk->e);
		if (la <= 0 || lb <= 0)
			goto out;
		pk->nlen = (size_t)la;
		pk->elen = (size_t)lb;
		r = 0;
	} else if (!strcmp(kty, "EC")) {
		if (!json_get_str(&j, 0, "crv", crv, sizeof crv) ||
		    !json_get_str(&j, 0, "x", a, sizeof a) || !json_get_str(&j, 0, "y", b, sizeof b))
			goto out;
		if (strcmp(crv, "P-256") && strcmp(crv, "P-384"))
			goto out;
		pk->ec = 1;
		pk->curve = !strcmp(crv, "P-256") ? BR_EC_secp256r1 : BR_EC_secp384r1;
		size = pk->curve == BR_EC_secp256r1 ? 32 : 48;
		pk->q[0] = 4;
		if (b64url_decode(a, strlen(a), pk->q + 1, size) != (long)size ||
		    b64url_decode(b, strlen(b), pk->q + 1 + size, size) != (long)size)
			goto out;
		pk->qlen = 1 + 2 * size;
		r = 0;
	}
out:
	json_free(&j);
	return r;
}

/* openssl's -inform for a key file of the temp dir. */
static const char *inform(const char *file)
{
	return strstr(file, ".der") ? "DER" : "PEM";
}

/*
 * The JWK must be exactly the RFC 7638 form (members in order, no spaces)
 * of the public key that openssl finds in the key file, and the thumbprint
 * base64url(SHA-256(jwk)) as openssl computes it. The expected JWK is
 * encoded with buf_b64url, which test_base64 checks against RFC 4648.
 */
static void check_jwk_with_openssl(const struct key *k, const char *keyfile)
{
	struct buf b = { 0 }, want = { 0 };
	unsigned char mod[512], e[8], tp[32];
	char *line;
	unsigned long pubexp;
	long n;
	size_t elen, half;

	if (k->type == BR_KEYTYPE_RSA) {
		CHECK_INT(sh("openssl rsa -inform %s -in %s -noout -text -modulus > rsa.txt",
			     inform(keyfile), keyfile), 0);
		if (!CHECK_INT(slurp("rsa.txt", &b), 0) ||
		    !CHECK((line = strstr(b.p, "\nModulus=")) != NULL))
			goto out;
		line[strcspn(line + 1, "\r\n") + 1] = 0;
		n = hex_decode(line + 9, mod, sizeof mod);
		if (!CHECK(n > 0) || !CHECK((line = strstr(b.p, "publicExponent: ")) != NULL))
			goto out;
		pubexp = strtoul(line + 16, NULL, 10);
		for (elen = 0; pubexp >> 8 * elen; elen++)
			;
		for (half = 0; half < elen; half++)
			e[half] = (unsigned char)(pubexp >> 8 * (elen - 1 - half));
		buf_str(&want, "{\"e\":\"");
		buf_b64url(&want, e, elen);
		buf_str(&want, "\",\"kty\":\"RSA\",\"n\":\"");
		buf_b64url(&want, mod, (size_t)n);
		buf_str(&want, "\"}");
	} else {
		/* the public key's DER ends with the point: 04 || x || y */
		CHECK_INT(sh("openssl ec -inform %s -in %s -pubout -outform DER -out pub.der",
			     inform(keyfile), keyfile), 0);
		if (!CHECK_INT(slurp("pub.der", &b), 0))
			goto out;
		half = !strcmp(k->alg, "ES256") ? 32 : 48;
		if (!CHECK(b.len > 2 * half + 1) || !CHECK_INT(b.p[b.len - 2 * half - 1], 4))
			goto out;
		buf_str(&want, half == 32 ? "{\"crv\":\"P-256\"" : "{\"crv\":\"P-384\"");
		buf_str(&want, ",\"kty\":\"EC\",\"x\":\"");
		buf_b64url(&want, b.p + b.len - 2 * half, half);
		buf_str(&want, "\",\"y\":\"");
		buf_b64url(&want, b.p + b.len - half, half);
		buf_str(&want, "\"}");
	}
	CHECK_STR(k->jwk, want.p);

	CHECK_INT(spit("jwk.txt", k->jwk, strlen(k->jwk)), 0);
	CHECK_INT(sh("openssl dgst -sha256 -binary -out thumbprint.bin jwk.txt"), 0);
	if (CHECK_INT(slurp("thumbprint.bin", &b), 0)) {
		n = b64url_decode(k->thumbprint, strlen(k->thumbprint), tp, sizeof tp);
		CHECK_INT(strlen(k->thumbprint), 43);
		CHECK_MEM(tp, (size_t)(n > 0 ? n : 0), b.p, b.len);
	}
out:
	buf_free(&b);
	buf_free(&want);
}

/* fn(key, its file) for each test key that must be accepted. */
static void each_good_key(void (*fn)(const struct key *, const char *))
{
	static struct key k;
	struct buf der = { 0 };
	size_t i;

	make_keys();
	for (i = 0; i < N_TEST_KEYS; i++) {
		if (!TEST_KEYS[i].alg)
			continue;
		set_context("key %s", TEST_KEYS[i].file);
		/* k points into acme-tiny's one key decoder: done with it before the next key */
		if (key_of(i, &k, &der))
			fn(&k, TEST_KEYS[i].file);
	}
	buf_free(&der);
	context[0] = 0;
}

/* The JWK and thumbprint of each key that must be accepted, against openssl's. */
static void test_jwk(void)
{
	each_good_key(check_jwk_with_openssl);
}

/* ===================== 7. names: --domains lists, add_name ===================== */

static void test_names_from_list(void)
{
	static struct names ns;
	char list[200 * 12];
	int i;

	set_context("names_from_list");
	CHECK(names_from_list("a.example,A.EXAMPLE,192.0.2.1", &ns) == 0);
	CHECK_INT(ns.n, 2);
	CHECK_STR(ns.id[0].value, "a.example");
	CHECK_STR(ns.id[1].type, "ip");
	CHECK(names_from_list("", &ns) < 0);
	CHECK(names_from_list("a.example,", &ns) < 0);
	CHECK(names_from_list("a.example,,b.example", &ns) < 0);
	CHECK(names_from_list("a.example b.example", &ns) < 0);
	CHECK(names_from_list("under_score.example", &ns) < 0);
	set_context("names_from_list: '*' only as a whole first label");
	CHECK(names_from_list("*.a.example", &ns) == 0 && !strcmp(ns.id[0].value, "*.a.example"));
	CHECK(names_from_list("*", &ns) < 0);
	CHECK(names_from_list("*.", &ns) < 0);
	CHECK(names_from_list("a.example,*", &ns) < 0);
	CHECK(names_from_list("*a.example", &ns) < 0);
	CHECK(names_from_list("a*b.example", &ns) < 0);
	CHECK(names_from_list("*.*.example", &ns) < 0);
	CHECK(names_from_list("a.*.example", &ns) < 0);
	for (list[0] = 0, i = 0; i < 101; i++)
		snprintf(list + strlen(list), sizeof list - strlen(list), "%sn%d.ex", i ? "," : "", i);
	CHECK(names_from_list(list, &ns) < 0);
	*strrchr(list, ',') = 0;
	CHECK(names_from_list(list, &ns) == 0 && ns.n == 100);
	context[0] = 0;
}

static void test_name_length(void)
{
	static struct names ns;
	char name[300];

	set_context("names of MAX_NAME bytes, and one more");
	memset(name, 'a', sizeof name);
	name[MAX_NAME] = 0;
	CHECK_INT(names_from_list(name, &ns), 0);
	name[MAX_NAME] = 'a';
	name[MAX_NAME + 1] = 0;
	CHECK_INT(names_from_list(name, &ns), -1);
	context[0] = 0;
}

static void test_add_name(void)
{
	static struct names ns;

	set_context("add_name with NUL");
	ns.n = 0;
	CHECK(add_name(&ns, (const unsigned char *)"1.2.3.4\0junk", 12, 0) < 0);
	context[0] = 0;
}

/* ===================== 7. CSRs: the names csr_names reads ===================== */

/* The identifiers as one line: "dns:a.example ip:127.0.0.1". */
static const char *names_text(const struct names *ns)
{
	static char text[MAX_NAMES * (MAX_NAME + 8)];
	size_t len = 0;
	int k;

	text[0] = 0;
	for (k = 0; k < ns->n; k++)
		len += (size_t)snprintf(text + len, sizeof text - len, "%s%s:%s", k ? " " : "",
					ns->id[k].type, ns->id[k].value);
	return text;
}

/* csr_names over an exact-size copy; its result. */
static int names_of(const void *der, size_t len, struct names *ns)
{
	unsigned char *p = exact_copy(der, len);
	int r = csr_names(p, len, ns);

	free(p);
	return r;
}

/*
 * A minimal CertificationRequestInfo, made by hand so that single length
 * bytes can be broken: csr_names does not look at the key or signature.
 */
static const unsigned char MINI_CSR[] = {
	0x30, 0x21,                                  /* CertificationRequest */
	0x30, 0x1F,                                  /*  CertificationRequestInfo */
	0x02, 0x01, 0x00,                            /*   version */
	0x30, 0x16,                                  /*   subject: Name */
	0x31, 0x14,                                  /*    RDN: SET */
	0x30, 0x12,                                  /*     AttributeTypeAndValue */
	0x06, 0x03, 0x55, 0x04, 0x03,                /*      commonName */
	0x0C, 0x0B, 'e', 'x', 'a', 'm', 'p', 'l', 'e', '.', 'c', 'o', 'm',
	0x30, 0x00,                                  /*   subjectPKInfo (not read) */
	0xA0, 0x00,                                  /*   attributes */
};

static void test_csr_handmade(void)
{
	static struct names ns;
	unsigned char p[64];
	size_t len = sizeof MINI_CSR;

	set_context("CSR by hand");
	if (CHECK_INT(names_of(MINI_CSR, len, &ns), 0))
		CHECK_STR(names_text(&ns), "dns:example.com");

	/* each length byte in turn claims one byte more than there is */
	memcpy(p, MINI_CSR, len);
	p[1]++;
	CHECK_INT(names_of(p, len, &ns), -1);
	memcpy(p, MINI_CSR, len);
	p[3]++;
	CHECK_INT(names_of(p, len, &ns), -1);
	memcpy(p, MINI_CSR, len);
	p[8]++;                                      /* subject */
	CHECK_INT(names_of(p, len, &ns), -1);
	memcpy(p, MINI_CSR, len);
	p[10]++;                                     /* RDN */
	CHECK_INT(names_of(p, len, &ns), -1);
	memcpy(p, MINI_CSR, len);
	p[19]++;                                     /* the CN's value */
	CHECK_INT(names_of(p, len, &ns), -1);

	/* long-form lengths: far too large, 4 length bytes, indefinite, cut short */
	CHECK_INT(names_of("\x30\x82\x01\x00\x30\x00", 6, &ns), -1);
	CHECK_INT(names_of("\x30\x83\xFF\xFF\xFF\x30\x00", 7, &ns), -1);
	CHECK_INT(names_of("\x30\x84\x00\x00\x00\x02\x30\x00", 8, &ns), -1);
	CHECK_INT(names_of("\x30\x80\x30\x00\x00\x00", 6, &ns), -1);
	CHECK_INT(names_of("\x30\x82\x01", 3, &ns), -1);
	CHECK_INT(names_of("\x30", 1, &ns), -1);
	CHECK_INT(names_of("", 0, &ns), -1);
	/* a high tag number form, and a byte after the outer SEQUENCE */
	memcpy(p, MINI_CSR, len);
	p[0] = 0x3F;
	CHECK_INT(names_of(p, len, &ns), -1);
	memcpy(p, MINI_CSR, len);
	p[len] = 0;
	CHECK_INT(names_of(p, len + 1, &ns), -1);
	/* the same CSR with a two-byte length form is still read */
	p[0] = 0x30;
	p[1] = 0x81;
	p[2] = 0x21;
	memcpy(p + 3, MINI_CSR + 2, len - 2);
	if (CHECK_INT(names_of(p, len + 1, &ns), 0))
		CHECK_STR(names_text(&ns), "dns:example.com");
	context[0] = 0;
}

/* Every prefix of a real CSR is refused; no flipped bit anywhere crashes. */
static void test_csr_robustness(const char *der, size_t dlen)
{
	static struct names ns;
	size_t len, i, bit, bad_prefix = 0, odd = 0;
	int prefix_ok = 1, results_ok = 1, r;

	set_context("CSR robustness");
	for (len = 0; len < dlen; len++)
		if (names_of(der, len, &ns) != -1 && prefix_ok) {
			prefix_ok = 0;
			bad_prefix = len;
		}
	check(prefix_ok, __FILE__, __LINE__, "a prefix of %zu bytes was accepted", bad_prefix);
	for (i = 0; i < dlen; i++)
		for (bit = 0; bit < 8; bit++) {
			unsigned char *p = exact_copy(der, dlen);

			p[i] ^= (unsigned char)(1 << bit);
			r = csr_names(p, dlen, &ns);
			if ((r != 0 && r != -1) || (r == 0 && (ns.n < 1 || ns.n > MAX_NAMES))) {
				if (results_ok)
					odd = i;
				results_ok = 0;
			}
			free(p);
		}
	check(results_ok, __FILE__, __LINE__, "odd result with byte %zu flipped", odd);
	context[0] = 0;
}

/* Nothing may follow GeneralNames, nor a CSR's attributes. */
static void test_csr_ends(void)
{
	static struct names ns;
	static const unsigned char san[] = { 0x30, 0x08, 0x82, 0x06, 'a', '.', 't', 'e', 's', 't', 0x00 };
	unsigned char p[64];

	set_context("san_names: nothing may follow GeneralNames");
	ns.n = 0;
	CHECK_INT(san_names((struct der){ san, sizeof san - 1 }, &ns), 0);
	CHECK_INT(ns.n, 1);
	CHECK_INT(san_names((struct der){ san, sizeof san }, &ns), -1);

	set_context("csr_names: nothing may follow the attributes");
	memcpy(p, MINI_CSR, sizeof MINI_CSR);
	p[1] += 2;
	p[3] += 2;
	p[sizeof MINI_CSR] = 0x05;
	p[sizeof MINI_CSR + 1] = 0x00;
	CHECK_INT(names_of(p, sizeof MINI_CSR + 2, &ns), -1);
	context[0] = 0;
}

/*
 * CSRs made by openssl into the temp dir, PEM and DER, for the csr and
 * load groups: make_csrs() makes them once.
 */
static const struct {
	const char *name;
	const char *args;      /* for openssl req */
	const char *want;      /* names_text, or NULL if csr_names must refuse it */
} TEST_CSRS[] = {
	{ "mixed", "-subj '/CN=Example.COM' -addext "
	  "'subjectAltName=DNS:www.example.com,DNS:example.com,IP:127.0.0.1,IP:::1'",
	  "dns:example.com dns:www.example.com ip:127.0.0.1 ip:::1" },
	{ "cn-only", "-subj '/CN=only.example.org'", "dns:only.example.org" },
	{ "san-only", "-subj '/O=Example Org' -addext 'subjectAltName=DNS:a.example,DNS:B.Example'",
	  "dns:a.example dns:b.example" },
	{ "ip-cn", "-subj '/CN=192.0.2.1'", "ip:192.0.2.1" },
	{ "ipv6-cn", "-subj '/CN=2001:DB8::1' -addext 'subjectAltName=IP:2001:db8::1'", "ip:2001:db8::1" },
	{ "wildcard", "-subj '/CN=*.example.net'", "dns:*.example.net" },
	{ "two-cns", "-subj '/CN=one.example/CN=two.example'", "dns:one.example dns:two.example" },
	{ "critical-san", "-subj '/O=x' -addext 'keyUsage=digitalSignature' "
	  "-addext 'subjectAltName=critical,DNS:crit.example,email:a@b.example'", "dns:crit.example" },
	{ "space", "-subj '/CN=a b.example'", NULL },
	{ "underscore", "-subj '/CN=a_b.example'", NULL },
	{ "underscore-san", "-subj '/CN=ok.example' -addext 'subjectAltName=DNS:a_b.example'", NULL },
	{ "no-names", "-subj '/O=Nothing'", NULL },
	{ "email-only", "-subj '/O=x' -addext 'subjectAltName=email:a@b.example'", NULL },
};
#define N_TEST_CSRS (sizeof TEST_CSRS / sizeof TEST_CSRS[0])

static int csr_made[N_TEST_CSRS];       /* 1 once TEST_CSRS[i] is made, as .pem and .der */

/* Makes csr.key and the CSR files, once per run: the first group that needs them counts these checks. */
static void make_csrs(void)
{
	static int done;
	size_t i;

	if (done)
		return;
	done = 1;
	set_context("CSR key");
	CHECK_INT(sh("openssl ecparam -name prime256v1 -genkey -noout -out csr.key"), 0);
	for (i = 0; i < N_TEST_CSRS; i++) {
		set_context("CSR %s", TEST_CSRS[i].name);
		csr_made[i] = CHECK_INT(sh("openssl req -new -key csr.key %s -out %s.pem && "
					   "openssl req -in %s.pem -outform DER -out %s.der", TEST_CSRS[i].args,
					   TEST_CSRS[i].name, TEST_CSRS[i].name, TEST_CSRS[i].name), 0);
	}
	context[0] = 0;
}

/* CSRs made by openssl, PEM and DER; MAX_NAMES names and one more; every prefix and bit flip. */
static void test_csr(void)
{
	static struct names ns;
	struct buf pem = { 0 }, der = { 0 }, args = { 0 }, mixed = { 0 };
	char name[64];
	size_t i;
	int k, count;

	make_csrs();
	for (i = 0; i < N_TEST_CSRS; i++) {
		if (!csr_made[i])
			continue;
		set_context("CSR %s", TEST_CSRS[i].name);
		/* PEM through load_der, and the same as DER */
		snprintf(name, sizeof name, "%s.pem", TEST_CSRS[i].name);
		load(name, "CSR", CSR_LABELS, &pem);
		snprintf(name, sizeof name, "%s.der", TEST_CSRS[i].name);
		load(name, "CSR", CSR_LABELS, &der);
		CHECK_MEM(pem.p, pem.len, der.p, der.len);
		if (TEST_CSRS[i].want) {
			if (CHECK_INT(names_of(pem.p, pem.len, &ns), 0))
				CHECK_STR(names_text(&ns), TEST_CSRS[i].want);
			if (CHECK_INT(names_of(der.p, der.len, &ns), 0))
				CHECK_STR(names_text(&ns), TEST_CSRS[i].want);
		} else {
			CHECK_INT(names_of(pem.p, pem.len, &ns), -1);
			CHECK_INT(names_of(der.p, der.len, &ns), -1);
		}
		if (!strcmp(TEST_CSRS[i].name, "mixed")) {
			mixed.len = 0;
			buf_add(&mixed, der.p, der.len);
		}
	}

	/* MAX_NAMES distinct names are fine, one more is not */
	for (count = MAX_NAMES; count <= MAX_NAMES + 1; count++) {
		set_context("CSR with %d names", count);
		args.len = 0;
		buf_str(&args, "-subj '/CN=n0.example' -addext 'subjectAltName=");
		for (k = 0; k < count; k++) {
			snprintf(name, sizeof name, "%sDNS:n%d.example", k ? "," : "", k);
			buf_str(&args, name);
		}
		buf_str(&args, "'");
		if (!CHECK_INT(sh("openssl req -new -key csr.key %s -outform DER -out many.der", args.p), 0))
			continue;
		load("many.der", "CSR", CSR_LABELS, &der);
		CHECK_INT(names_of(der.p, der.len, &ns), count <= MAX_NAMES ? 0 : -1);
		if (count <= MAX_NAMES)
			CHECK_INT(ns.n, MAX_NAMES);
	}

	if (CHECK(mixed.len > 100))
		test_csr_robustness(mixed.p, mixed.len);
	buf_free(&pem);
	buf_free(&der);
	buf_free(&args);
	buf_free(&mixed);
	context[0] = 0;
}

/* ===================== 7. load_der on whole key and CSR files ===================== */

/*
 * For in_child: load a key file and decode it. Returns only if both
 * worked; otherwise the child ends through exit(), in fail() or here.
 */
static void child_load_key(const char *name)
{
	static struct key k;
	struct buf der = { 0 };

	xload_der(tpath(name), "account key", KEY_LABELS, &der);
	if (key_from_der(&k, der.p, der.len))
		exit(1);
	buf_free(&der);
}

/* The same for a CSR file and its names. */
static void child_load_csr(const char *name)
{
	static struct names ns;
	struct buf der = { 0 };

	xload_der(tpath(name), "CSR", CSR_LABELS, &der);
	if (csr_names((const unsigned char *)der.p, der.len, &ns))
		exit(1);
	buf_free(&der);
}

/* One in_child run: want 0 if the file must load and decode, 1 if it must be refused. */
static void expect_load(int line, void (*fn)(const char *), const char *file, int want)
{
	int got = in_child(fn, file);

	set_context("load_der %s (%s)", file, fn == child_load_key ? "key" : "CSR");
	check(got == want, __FILE__, line, "%s (child: %s), expected %s", got == 0 ? "loaded" :
	      got == 1 ? "refused" : "crashed", child_how, want ? "a clean refusal" : "to load");
}

/*
 * Files as a user may give them. Refusals end the run through fail(),
 * which exits, so each load runs in a child process (see in_child).
 */
static void test_load_files(void)
{
	struct buf big = { 0 };

	make_keys();
	make_csrs();
	/* controls: files that load, as make_keys and make_csrs had openssl make them */
	expect_load(__LINE__, child_load_key, "ec256.pem", 0);
	expect_load(__LINE__, child_load_key, "ec256.der", 0);
	expect_load(__LINE__, child_load_csr, "mixed.pem", 0);
	expect_load(__LINE__, child_load_csr, "mixed.der", 0);

	/* the same PEM files with CRLF line ends, as openssl also reads them */
	CHECK_INT(sh("sed 's/$/\\r/' ec256.pem > ec256-crlf.pem && sed 's/$/\\r/' mixed.pem > mixed-crlf.pem"), 0);
	expect_load(__LINE__, child_load_key, "ec256-crlf.pem", 0);
	expect_load(__LINE__, child_load_csr, "mixed-crlf.pem", 0);

	CHECK_INT(spit("empty.pem", "", 0), 0);
	CHECK_INT(spit("truncated.pem", S("-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n")), 0);
	CHECK_INT(spit("wrong-label.pem", S("-----BEGIN CERTIFICATE-----\nMAMCAQA=\n-----END CERTIFICATE-----\n")), 0);
	while (big.len <= MAX_FILE)
		buf_str(&big, "0123456789abcdef");
	CHECK_INT(spit("big.pem", big.p, big.len), 0);
	expect_load(__LINE__, child_load_key, "missing.pem", 1);
	expect_load(__LINE__, child_load_key, "truncated.pem", 1);
	expect_load(__LINE__, child_load_key, "wrong-label.pem", 1);
	expect_load(__LINE__, child_load_key, "big.pem", 1);
	expect_load(__LINE__, child_load_csr, "ec256.pem", 1);
	expect_load(__LINE__, child_load_key, "mixed.pem", 1);
	/* an empty file is no key and no CSR */
	expect_load(__LINE__, child_load_key, "empty.pem", 1);
	expect_load(__LINE__, child_load_csr, "empty.pem", 1);
	buf_free(&big);
	context[0] = 0;
}

/* ===================== 6. JWS ===================== */

/* DER ECDSA-Sig-Value (RFC 3279), SEQUENCE { INTEGER r, INTEGER s }, from raw r||s. */
static size_t ecdsa_raw_to_der(const unsigned char *rs, size_t len, unsigned char *out)
{
	size_t half = len / 2, o = 2, k;

	for (k = 0; k < 2; k++) {
		const unsigned char *v = rs + k * half;
		size_t n = half;

		while (n > 1 && !v[0]) {          /* minimal: no leading zero bytes... */
			v++;
			n--;
		}
		out[o++] = 0x02;
		out[o++] = (unsigned char)(n + (v[0] >= 0x80));
		if (v[0] >= 0x80)                 /* ...except one that keeps it positive */
			out[o++] = 0;
		memcpy(out + o, v, n);
		o += n;
	}
	out[0] = 0x30;
	out[1] = (unsigned char)(o - 2);      /* at most 2 * 51 for P-384: short form */
	return o;
}

/* Verifies a JWS signature over data with BearSSL; 1 if it is good. */
static int bearssl_verify(struct pubkey *pk, const void *data, size_t len,
			  const unsigned char *sig, size_t siglen)
{
	unsigned char hash[48], out[32];

	if (!pk->ec) {
		br_rsa_public_key rk = { pk->n, pk->nlen, pk->e, pk->elen };
		br_sha256_context h;

		br_sha256_init(&h);
		br_sha256_update(&h, data, len);
		br_sha256_out(&h, hash);
		return br_rsa_pkcs1_vrfy_get_default()(sig, siglen, BR_HASH_OID_SHA256, 32, &rk, out) &&
		       !memcmp(out, hash, 32);
	} else {
		br_ec_public_key ek = { pk->curve, pk->q, pk->qlen };
		size_t hlen = pk->curve == BR_EC_secp256r1 ? 32 : 48;

		if (hlen == 32) {
			br_sha256_context h;
			br_sha256_init(&h);
			br_sha256_update(&h, data, len);
			br_sha256_out(&h, hash);
		} else {
			br_sha384_context h;
			br_sha384_init(&h);
			br_sha384_update(&h, data, len);
			br_sha384_out(&h, hash);
		}
		return br_ecdsa_vrfy_raw_get_default()(br_ec_get_default(), hash, hlen, &ek, sig, siglen) == 1;
	}
}

/* Verifies the same with the openssl command line and pub.pem of the temp dir; 1 if good. */
static int openssl_verify(const struct pubkey *pk, const void *data, size_t len,
			  const unsigned char *sig, size_t siglen)
{
	unsigned char der[128];

	if (spit("input.txt", data, len))
		return 0;
	if (pk->ec) {
		if (siglen > 96 || spit("sig.bin", der, ecdsa_raw_to_der(sig, siglen, der)))
			return 0;
	} else if (spit("sig.bin", sig, siglen)) {
		return 0;
	}
	return sh("openssl dgst -%s -verify pub.pem -signature sig.bin input.txt",
		  pk->ec && pk->curve == BR_EC_secp384r1 ? "sha384" : "sha256") == 0;
}

/*
 * jws_build with and without kid, with a payload and as POST-as-GET. The
 * result is taken apart and its signature checked with BearSSL and with
 * openssl, and found bad once a byte is changed.
 */
static void test_jws(const struct key *k, const char *keyfile)
{
	static const char nonce[] = "Nonce_123-abc";
	static const char url[] = "https://example.com/acme/new-order?q=\"x\"";
	static const char kid_url[] = "https://example.com/acme/acct/1";
	static char protected[4096], payload[4096], signature[2048], header[4096], text[1024];
	unsigned char sig[600];
	struct buf jws = { 0 }, input = { 0 };
	struct json j = { 0 }, h = { 0 };
	struct pubkey pk;
	int variant, t;
	long n;

	if (!CHECK_INT(pubkey_from_jwk(k->jwk, &pk), 0))
		return;
	CHECK_INT(sh("openssl pkey -inform %s -in %s -pubout -out pub.pem", inform(keyfile), keyfile), 0);
	for (variant = 0; variant < 4; variant++) {
		const char *kid = variant & 1 ? kid_url : NULL;
		const char *body = variant & 2 ? NULL : "{\"identifiers\":[{\"type\":\"dns\"}]}";

		set_context("JWS %s %s, %s, %s", keyfile, k->alg, kid ? "kid" : "jwk",
			    body ? "payload" : "POST-as-GET");
		/* the same buffer each time: jws_build must replace, not append */
		xjws_build(&jws, k, kid, nonce, url, body, NULL);
		if (!CHECK_INT(json_parse(&j, jws.p, jws.len), 0) || !CHECK_INT(j.t[0].type, J_OBJ))
			continue;
		CHECK_INT(j.t[0].next, 7);                    /* exactly three members */
		if (!CHECK(json_get_str(&j, 0, "protected", protected, sizeof protected)) ||
		    !CHECK(json_get_str(&j, 0, "payload", payload, sizeof payload)) ||
		    !CHECK(json_get_str(&j, 0, "signature", signature, sizeof signature)))
			continue;

		/* the protected header */
		n = b64url_decode(protected, strlen(protected), (unsigned char *)header, sizeof header - 1);
		if (!CHECK(n > 0))
			continue;
		header[n] = 0;
		if (!CHECK_INT(json_parse(&h, header, (size_t)n), 0))
			continue;
		CHECK_STR(json_get_str(&h, 0, "alg", text, sizeof text), k->alg);
		CHECK_STR(json_get_str(&h, 0, "nonce", text, sizeof text), nonce);
		CHECK_STR(json_get_str(&h, 0, "url", text, sizeof text), url);
		if (kid) {
			CHECK_STR(json_get_str(&h, 0, "kid", text, sizeof text), kid);
			CHECK_INT(json_get(&h, 0, "jwk"), -1);
		} else {
			t = json_get(&h, 0, "jwk");
			if (CHECK(t > 0 && h.t[t].type == J_OBJ))
				CHECK_MEM(header + h.t[t].start, (size_t)(h.t[t].end - h.t[t].start),
					  k->jwk, strlen(k->jwk));
			CHECK_INT(json_get(&h, 0, "kid"), -1);
		}

		/* the payload: base64url of the body, or empty for POST-as-GET */
		n = b64url_decode(payload, strlen(payload), (unsigned char *)text, sizeof text);
		CHECK_MEM(text, (size_t)(n >= 0 ? n : 0), body ? body : "", body ? strlen(body) : 0);
		if (!body)
			CHECK_STR(payload, "");

		/* the signature, over protected "." payload */
		n = b64url_decode(signature, strlen(signature), sig, sizeof sig);
		CHECK_INT(n, !pk.ec ? (long)pk.nlen : pk.curve == BR_EC_secp256r1 ? 64 : 96);
		if (n <= 0)
			continue;
		input.len = 0;
		buf_str(&input, protected);
		buf_str(&input, ".");
		buf_str(&input, payload);
		CHECK(bearssl_verify(&pk, input.p, input.len, sig, (size_t)n));
		CHECK(openssl_verify(&pk, input.p, input.len, sig, (size_t)n));

		/* one changed byte, in the signed text or in the signature, must fail */
		input.p[input.len / 2] ^= 1;
		CHECK(!bearssl_verify(&pk, input.p, input.len, sig, (size_t)n));
		if (variant == 0)
			CHECK(!openssl_verify(&pk, input.p, input.len, sig, (size_t)n));
		input.p[input.len / 2] ^= 1;
		sig[n / 3] ^= 0x10;
		CHECK(!bearssl_verify(&pk, input.p, input.len, sig, (size_t)n));
	}
	buf_free(&jws);
	buf_free(&input);
	json_free(&j);
	json_free(&h);
	context[0] = 0;
}

/* test_jws with each key that must be accepted. */
static void test_jws_keys(void)
{
	each_good_key(test_jws);
}

/*
 * The HMAC of protected "." payload (RFC 7515's signing input) under key,
 * as openssl computes it with the digest dgst ("sha256"...), into out: its
 * length, or -1.
 */
static long openssl_hmac(const char *dgst, const unsigned char *key, size_t klen,
			 const char *input, unsigned char *out, size_t cap)
{
	static char hex[2 * 512 + 1];
	struct buf mac = { 0 };
	long n = -1;
	size_t k;

	if (klen > 512 || spit("eab-input.txt", input, strlen(input)))
		return -1;
	for (k = 0; k < klen; k++)
		snprintf(hex + 2 * k, 3, "%02x", key[k]);
	hex[2 * klen] = 0;
	unlink(tpath("eab-mac.bin"));
	if (sh("openssl dgst -%s -mac HMAC -macopt hexkey:%s -binary -out eab-mac.bin eab-input.txt",
	       dgst, hex) == 0 && slurp("eab-mac.bin", &mac) == 0 && mac.len <= cap) {
		memcpy(out, mac.p, mac.len);
		n = (long)mac.len;
	}
	buf_free(&mac);
	return n;
}

/*
 * jws (a flattened JWS, as xjws_build writes it) MACed with key under alg:
 * three members, the protected header and payload as given (prot, payload,
 * base64url), and a signature that is openssl's HMAC of the signing input.
 */
static void check_eab_jws(const struct json *j, int obj, const char *prot, const char *payload,
			  const char *alg, const unsigned char *key, size_t klen)
{
	static char protected[4096], body[4096], signature[512], text[4096];
	unsigned char sig[128], want[128];
	const char *dgst = !strcmp(alg, "HS512") ? "sha512" : !strcmp(alg, "HS384") ? "sha384" : "sha256";
	long n, m;

	if (!CHECK(obj >= 0 && j->t[obj].type == J_OBJ))
		return;
	CHECK_INT(j->t[obj].next, obj + 7);               /* exactly three members */
	if (!CHECK(json_get_str(j, obj, "protected", protected, sizeof protected)) ||
	    !CHECK(json_get_str(j, obj, "payload", body, sizeof body)) ||
	    !CHECK(json_get_str(j, obj, "signature", signature, sizeof signature)))
		return;
	n = b64url_decode(protected, strlen(protected), (unsigned char *)text, sizeof text - 1);
	if (prot && CHECK(n >= 0))
		CHECK_MEM(text, (size_t)n, prot, strlen(prot));
	n = b64url_decode(body, strlen(body), (unsigned char *)text, sizeof text - 1);
	if (CHECK(n >= 0))
		CHECK_MEM(text, (size_t)n, payload, strlen(payload));
	n = b64url_decode(signature, strlen(signature), sig, sizeof sig);
	CHECK_INT(n, !strcmp(alg, "HS512") ? 64 : !strcmp(alg, "HS384") ? 48 : 32);
	snprintf(text, sizeof text, "%s.%s", protected, body);
	m = openssl_hmac(dgst, key, klen, text, want, sizeof want);
	if (CHECK(m > 0))
		CHECK_MEM(sig, (size_t)(n < 0 ? 0 : n), want, (size_t)m);
	/* and not the MAC of another key */
	m = openssl_hmac(dgst, key, klen > 1 ? klen - 1 : 2, text, want, sizeof want);
	CHECK(m <= 0 || m != n || memcmp(sig, want, (size_t)m));
}

static struct acme eab_acme;
static struct key eab_key;

/* xadd_eab with --eab-hmac-key key; for in_child, where a key that is refused ends the run. */
static void add_eab_with(const char *key)
{
	struct buf b = { 0 };

	run.eab_hmac_key = key;
	xadd_eab(&b, &eab_acme);
	buf_free(&b);
}

/*
 * External Account Binding (RFC 8555 7.3.4): xjws_build with no key but a
 * MAC key, under --eab-alg HS256, HS384 and HS512, checked against openssl's
 * HMAC, with a key shorter and one longer than the hash's block; then
 * xadd_eab as newAccount sends it: {"alg", "kid", "url"}, the account JWK.
 */
static void test_jws_eab(void)
{
	static const char *const algs[] = { "HS256", "HS384", "HS512" };
	static const char url[] = "https://ca.example/new-acct";
	static const char payload[] = "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"AAAA\",\"y\":\"BBBB\"}";
	unsigned char keys[2][200], text[256];
	size_t lens[2] = { 32, 200 }, a, k;
	struct buf jws = { 0 }, mac = { 0 }, out = { 0 }, key64 = { 0 };
	struct json j = { 0 }, h = { 0 };
	static char header[1024], protected[1024], prot[256];
	int t;
	long n;

	for (k = 0; k < sizeof keys[0]; k++) {
		keys[0][k] = (unsigned char)k;
		keys[1][k] = (unsigned char)(0xff - 3 * k);
	}
	for (a = 0; a < 3; a++) {
		for (k = 0; k < 2; k++) {
			set_context("xjws_build %s, a %zu-byte key", algs[a], lens[k]);
			run.eab_alg = algs[a];
			mac.len = 0;
			buf_add(&mac, keys[k], lens[k]);
			/* the header is exactly alg, kid and url */
			snprintf(prot, sizeof prot, "{\"alg\":\"%s\",\"kid\":\"kid-1\",\"url\":\"%s\"}",
				 algs[a], url);
			/* into a buffer that holds something: xjws_build replaces it */
			buf_str(&jws, "old");
			xjws_build(&jws, NULL, "kid-1", NULL, url, payload, &mac);
			if (CHECK_INT(json_parse(&j, jws.p, jws.len), 0))
				check_eab_jws(&j, 0, prot, payload, algs[a], keys[k], lens[k]);
		}
	}

	/* xadd_eab: the member newAccount gets, under a kid that needs escaping */
	strcpy(eab_key.jwk, payload);
	eab_acme.key = &eab_key;
	strcpy(eab_acme.new_account, "https://ca.example/acme/new-acct");
	run.eab_kid = "kid \"2\"";
	buf_b64url(&key64, keys[1], lens[1]);
	for (a = 0; a < 3; a++) {
		set_context("xadd_eab %s", algs[a]);
		run.eab_alg = algs[a];
		run.eab_hmac_key = key64.p;
		out.len = 0;
		buf_str(&out, "{\"termsOfServiceAgreed\":true");
		xadd_eab(&out, &eab_acme);
		buf_str(&out, "}");
		if (!CHECK_INT(json_parse(&j, out.p, out.len), 0))
			continue;
		t = json_get(&j, 0, "externalAccountBinding");
		check_eab_jws(&j, t, NULL, payload, algs[a], keys[1], lens[1]);
		if (!CHECK(json_get_str(&j, t, "protected", protected, sizeof protected)))
			continue;
		n = b64url_decode(protected, strlen(protected), (unsigned char *)header, sizeof header - 1);
		if (!CHECK(n > 0) || !CHECK_INT(json_parse(&h, header, (size_t)n), 0))
			continue;
		CHECK_INT(h.t[0].next, 7);                /* alg, kid and url; no nonce, no jwk */
		CHECK_STR(json_get_str(&h, 0, "alg", (char *)text, sizeof text), algs[a]);
		CHECK_STR(json_get_str(&h, 0, "kid", (char *)text, sizeof text), "kid \"2\"");
		CHECK_STR(json_get_str(&h, 0, "url", (char *)text, sizeof text), eab_acme.new_account);
	}
	/* a key that is not base64url, or empty, ends the run */
	set_context("xadd_eab refuses --eab-hmac-key");
	CHECK_INT(in_child(add_eab_with, "a+b/c"), 1);
	CHECK_INT(in_child(add_eab_with, "YWJj="), 1);
	CHECK_INT(in_child(add_eab_with, ""), 1);
	CHECK_INT(in_child(add_eab_with, "YWJj"), 0);
	run.eab_alg = "HS256";
	run.eab_kid = run.eab_hmac_key = NULL;
	buf_free(&jws);
	buf_free(&mac);
	buf_free(&out);
	buf_free(&key64);
	json_free(&j);
	json_free(&h);
	context[0] = 0;
}

/* ===================== 7 and 6. keys and CSRs made by acme-tiny (--domains) ===================== */

/*
 * csr_build with key k (from keyfile): openssl verifies the CSR's
 * signature, its public key is the key's, and csr_names reads back the names.
 */
static void check_built_csr(const struct key *k, const char *keyfile, const char *list,
			    const char *subject)
{
	static struct names ns, back;
	struct buf csr = { 0 };
	int i;

	set_context("csr_build %s %s", keyfile, list);
	CHECK(names_from_list(list, &ns) == 0);
	xcsr_build(&csr, &ns, k);
	CHECK(spit("built.csr", csr.p, csr.len) == 0);
	CHECK_INT(sh("openssl req -inform DER -in built.csr -verify -noout"), 0);
	CHECK_INT(sh("test \"$(openssl req -inform DER -in built.csr -noout -subject)\" = '%s'",
		     subject), 0);
	CHECK_INT(sh("test \"$(openssl req -inform DER -in built.csr -noout -pubkey)\" = "
		     "\"$(openssl pkey -in %s -pubout)\"", keyfile), 0);
	/* the same names come back, in any order (csr_names puts the CN first) */
	CHECK(csr_names((const unsigned char *)csr.p, csr.len, &back) == 0);
	CHECK_INT(back.n, ns.n);
	for (i = 0; i < ns.n; i++)
		check(our_ident(&back, ns.id[i].type, ns.id[i].value) != NULL, __FILE__, __LINE__,
		      "%s %s not read back from the CSR", ns.id[i].type, ns.id[i].value);
	buf_free(&csr);
}

/* generate_key for the quick types, then CSRs signed with each key. */
static void test_generated_keys(void)
{
	static struct key k;
	struct buf der = { 0 };
	const struct key_type *t;
	char name[64];

	make_keys();            /* rsa4096.pem */
	for (t = KEY_TYPES; t->name && t->bits <= 2048; t++) {
		set_context("generate_key %s", t->name);
		snprintf(name, sizeof name, "gen-%s.key", t->name);
		xgenerate_key(tpath(name), t);
		CHECK_INT(sh("openssl pkey -check -noout -in %s", name), 0);
		CHECK_INT(sh("test \"$(stat -c %%a %s)\" = 600", name), 0);
		xload_der(tpath(name), "key", KEY_LABELS, &der);
		CHECK(key_from_der(&k, der.p, der.len) == NULL);
		CHECK_STR(k.alg, t->curve == BR_EC_secp384r1 ? "ES384" : t->curve ? "ES256" : "RS256");
		check_built_csr(&k, name, "Example.COM,www.example.com,192.0.2.1,2001:db8::1",
				"subject=CN = example.com");
	}
	/* the CN: the first DNS name of at most 64 bytes, never an IP address */
	check_built_csr(&k, name, "192.0.2.1,a.example.com", "subject=CN = a.example.com");
	check_built_csr(&k, name, "192.0.2.1,::1", "subject=");
	check_built_csr(&k, name, "a123456789a123456789a123456789a123456789a123456789a123456789x.com,"
			"b.example.com", "subject=CN = b.example.com");
	/* and with RSA-4096, made by openssl */
	xload_der(tpath("rsa4096.pem"), "key", KEY_LABELS, &der);
	CHECK(key_from_der(&k, der.p, der.len) == NULL);
	check_built_csr(&k, "rsa4096.pem", "big.example.com", "subject=CN = big.example.com");
	buf_free(&der);
	context[0] = 0;
}

/* ===================== 5. HTTP responses ===================== */

/* A connection whose bytes come from memory, handed out in pieces as told. */
struct mock {
	struct conn c;          /* first: read_response's callback gets &m->c */
	const char *data;
	size_t len, pos;
	size_t first;           /* the first read gives at most this many bytes; 0: no limit */
	size_t step;            /* each later read at most this many; 0: no limit */
	int end_error;          /* at the end of data, -1 (an error) instead of 0 (a clean end) */
};

static int mock_read(struct conn *c, unsigned char *buf, size_t len)
{
	struct mock *m = (struct mock *)c;
	size_t n = m->len - m->pos, limit = m->pos == 0 ? m->first : m->step;

	if (n == 0) {
		if (!m->end_error)
			return 0;
		c->why = "mock read error";    /* as sock_read does, why comes with the -1 */
		return -1;
	}
	if (limit && n > limit)
		n = limit;
	if (n > len)
		n = len;
	memcpy(buf, m->data + m->pos, n);
	m->pos += n;
	return (int)n;
}

/* One read_response over the mock; *why is c.why afterwards. */
static int mock_response(const char *data, size_t len, int head, size_t first, size_t step,
			 int end_error, struct resp *r, const char **why)
{
	static struct mock m;
	int ret;

	memset(&m, 0, sizeof m);
	m.c.fd = -1;
	m.c.tls = NULL;
	m.c.deadline = now_ms() + 3600 * 1000LL;
	m.c.read = mock_read;
	m.data = data;
	m.len = len;
	m.first = first;
	m.step = step;
	m.end_error = end_error;
	ret = read_response(&m.c, r, head);
	*why = m.c.why;
	return ret;
}

static int same_text(const char *a, const char *b)
{
	return a && b ? !strcmp(a, b) : a == b;
}

static int same_response(int ret1, const struct resp *a, const char *why1,
			 int ret2, const struct resp *b, const char *why2)
{
	if (ret1 != ret2 || !same_text(why1, why2))
		return 0;
	if (ret1 < 0)
		return 1;
	return a->status == b->status && a->close == b->close && !strcmp(a->nonce, b->nonce) &&
	       !strcmp(a->location, b->location) && !strcmp(a->retry_after, b->retry_after) &&
	       a->body.len == b->body.len && (!a->body.len || !memcmp(a->body.p, b->body.p, a->body.len));
}

/*
 * Reads data as one response: in one piece (the result is left in r and
 * *why, and returned), then split in two at every position, then one byte
 * per read. Every way must give the same result: TCP and TLS hand bytes
 * over in arbitrary pieces. Large inputs are split at every 997th position
 * only, to keep the run short.
 */
static int http_case(int line, const char *name, const char *data, size_t len, int head,
		     int end_error, struct resp *r, const char **why)
{
	struct resp other = { 0 };
	const char *why2;
	size_t k, stride = len > 20000 ? 997 : 1, bad = 0;
	int ret, ret2, splits_same = 1;

	set_context("HTTP %s", name);
	ret = mock_response(data, len, head, 0, 0, end_error, r, why);
	for (k = 1; k < len; k += stride) {
		ret2 = mock_response(data, len, head, k, 0, end_error, &other, &why2);
		if (!same_response(ret, r, *why, ret2, &other, why2) && splits_same) {
			splits_same = 0;
			bad = k;
		}
	}
	check(splits_same, __FILE__, line, "split after byte %zu: another result than in one piece", bad);
	ret2 = mock_response(data, len, head, 1, 1, end_error, &other, &why2);
	check(same_response(ret, r, *why, ret2, &other, why2), __FILE__, line,
	      "one byte per read: another result than in one piece (%d %s / %d %s)",
	      ret, *why ? *why : "", ret2, why2 ? why2 : "");
	buf_free(&other.body);
	return ret;
}

/* HTTP_CASE(name, data, len, head, end_error, &r, &why), data and len maybe as S("...") */
#define HTTP_CASE(...) http_case(__LINE__, __VA_ARGS__)

static const char *body_text(const struct resp *r)
{
	return r->body.len ? r->body.p : "";
}

/* Link headers: the terms of service are the <URL> of the link whose rel says so, no other. */
static void test_http_terms(void)
{
	static const char *const cases[][2] = {
		{ "<https://ca.test/tos>;rel=\"terms-of-service\"", "https://ca.test/tos" },
		{ "<https://ca.test/dir>;rel=\"index\", <https://ca.test/tos-v2>;"
		  "rel=\"terms-of-service\"", "https://ca.test/tos-v2" },
		{ "<https://ca.test/tos>; rel=\"terms-of-service\", <https://ca.test/dir>;rel=\"index\"",
		  "https://ca.test/tos" },
		{ "<https://ca.test/up>;rel=\"up\"", "" },
		{ "rel=\"terms-of-service\", <https://ca.test/dir>;rel=\"index\"", "" },
		{ "https://ca.test/tos;rel=\"terms-of-service\"", "" },
		{ "<https://ca.test/tos;rel=\"terms-of-service\"", "" },
		/* not plain printable ASCII: not kept, nor printed in a message */
		{ "<https://ca.test/\x1b[2Jtos>;rel=\"terms-of-service\"", "" },
	};
	struct resp r = { 0 };
	struct buf in = { 0 };
	const char *why;
	size_t k;

	for (k = 0; k < sizeof cases / sizeof cases[0]; k++) {
		in.len = 0;
		buf_cat(&in, "HTTP/1.1 403 Forbidden\r\nLink: ", cases[k][0],
			"\r\nContent-Length: 0\r\n\r\n", NULL);
		if (CHECK_INT(HTTP_CASE(cases[k][0], in.p, in.len, 0, 0, &r, &why), 0))
			CHECK_STR(r.terms, cases[k][1]);
	}
	buf_free(&in);
	buf_free(&r.body);
}

static void test_http_good(void)
{
	struct resp r = { 0 };
	struct buf b = { 0 };
	const char *why;
	int ret, k, n;

	ret = HTTP_CASE("Content-Length", S("HTTP/1.1 201 Created\r\n"
			"Replay-Nonce: abc-DEF_123\r\n"
			"Location: https://example.com/acme/acct/1\r\n"
			"Retry-After: 120\r\n"
			"Content-Type: application/json\r\n"
			"Content-Length: 13\r\n"
			"\r\n"
			"hello, world!"), 0, 0, &r, &why);
	if (CHECK_INT(ret, 0)) {
		CHECK_INT(r.status, 201);
		CHECK_INT(r.close, 0);
		CHECK_STR(r.nonce, "abc-DEF_123");
		CHECK_STR(r.location, "https://example.com/acme/acct/1");
		CHECK_STR(r.retry_after, "120");
		CHECK_INT(r.body.len, 13);
		CHECK_STR(body_text(&r), "hello, world!");
	}

	ret = HTTP_CASE("chunked", S("HTTP/1.1 200 OK\r\n"
			"Transfer-Encoding: chunked\r\n"
			"Replay-Nonce: n1\r\n"
			"\r\n"
			"5;name=value\r\nhello\r\n"
			"7 ; x\r\n, world\r\n"
			"a\r\n0123456789\r\n"
			"A\r\nABCDEFGHIJ\r\n"
			"1\r\n!\r\n"
			"0;last\r\n"
			"X-Trailer: yes\r\n"
			"Another-Trailer: one\r\n"
			"\r\n"), 0, 0, &r, &why);
	if (CHECK_INT(ret, 0)) {
		CHECK_INT(r.status, 200);
		CHECK_INT(r.close, 0);
		CHECK_STR(r.nonce, "n1");
		CHECK_STR(body_text(&r), "hello, world0123456789ABCDEFGHIJ!");
	}

	ret = HTTP_CASE("chunked without trailers", S("HTTP/1.1 200 OK\r\n"
			"transfer-encoding: Chunked\r\n\r\n"
			"00000003\r\nabc\r\n0\r\n\r\n"), 0, 0, &r, &why);
	if (CHECK_INT(ret, 0))
		CHECK_STR(body_text(&r), "abc");

	ret = HTTP_CASE("close-delimited", S("HTTP/1.1 200 OK\r\n"
			"Content-Type: text/plain\r\n"
			"\r\n"
			"the body ends\r\nwhen the server closes\n"), 0, 0, &r, &why);
	if (CHECK_INT(ret, 0)) {
		CHECK_INT(r.status, 200);
		CHECK_INT(r.close, 1);
		CHECK_STR(body_text(&r), "the body ends\r\nwhen the server closes\n");
	}

	ret = HTTP_CASE("HEAD", S("HTTP/1.1 200 OK\r\n"
			"Content-Length: 1234\r\n"
			"Replay-Nonce: headNonce\r\n"
			"\r\n"), 1, 0, &r, &why);
	if (CHECK_INT(ret, 0)) {
		CHECK_INT(r.status, 200);
		CHECK_STR(r.nonce, "headNonce");
		CHECK_INT(r.body.len, 0);
	}

	/* a HEAD answer's Content-Length is the size of a GET's body: no limit applies */
	ret = HTTP_CASE("HEAD, Content-Length past MAX_BODY", S("HTTP/1.1 200 OK\r\n"
			"Content-Length: 1048576\r\n"
			"Replay-Nonce: bigHead\r\n"
			"\r\n"), 1, 0, &r, &why);
	if (CHECK_INT(ret, 0))
		CHECK_STR(r.nonce, "bigHead");

	/* a Replay-Nonce that fills r->nonce, and one byte more: that one is not kept */
	for (k = 255; k <= 256; k++) {
		b.len = 0;
		buf_str(&b, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nReplay-Nonce: ");
		for (n = 0; n < k; n++)
			buf_str(&b, "N");
		buf_str(&b, "\r\n\r\n");
		ret = HTTP_CASE(k == 255 ? "Replay-Nonce of 255" : "Replay-Nonce of 256", b.p, b.len,
				0, 0, &r, &why);
		if (CHECK_INT(ret, 0))
			CHECK_INT((int)strlen(r.nonce), k == 255 ? 255 : 0);
	}

	ret = HTTP_CASE("204", S("HTTP/1.1 204 No Content\r\n"
			"Replay-Nonce: n204\r\n"
			"\r\n"), 0, 0, &r, &why);
	if (CHECK_INT(ret, 0)) {
		CHECK_INT(r.status, 204);
		CHECK_STR(r.nonce, "n204");
		CHECK_INT(r.body.len, 0);
	}

	/* 304 has no body, whatever its Content-Length says (RFC 9112 6.3) */
	ret = HTTP_CASE("304", S("HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n"),
			0, 0, &r, &why);
	if (CHECK_INT(ret, 0)) {
		CHECK_INT(r.status, 304);
		CHECK_INT(r.body.len, 0);
	}

	/* whitespace after a chunk size, before an extension: a tab as a space */
	ret = HTTP_CASE("chunk size and a tab", S("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
			"5\t;x\r\nhello\r\n0\r\n\r\n"), 0, 0, &r, &why);
	if (CHECK_INT(ret, 0))
		CHECK_STR(body_text(&r), "hello");
	/* ...and trailing, without one: a server that pads its chunk sizes */
	ret = HTTP_CASE("chunk size and spaces", S("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
			"\r\n5  \r\nhello\r\n0 \t\r\n\r\n"), 0, 0, &r, &why);
	if (CHECK_INT(ret, 0))
		CHECK_STR(body_text(&r), "hello");

	ret = HTTP_CASE("HTTP/1.0", S("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"),
			0, 0, &r, &why);
	if (CHECK_INT(ret, 0)) {
		CHECK_INT(r.close, 1);
		CHECK_STR(body_text(&r), "ok");
	}

	ret = HTTP_CASE("Connection: close", S("HTTP/1.1 404 Not Found\r\n"
			"Connection: close\r\ncontent-LENGTH:2\r\n\r\nno"), 0, 0, &r, &why);
	if (CHECK_INT(ret, 0)) {
		CHECK_INT(r.status, 404);
		CHECK_INT(r.close, 1);
		CHECK_STR(body_text(&r), "no");
	}

	/* values are trimmed; a nonce that is not base64url is dropped */
	ret = HTTP_CASE("header values", S("HTTP/1.1 200\r\n"
			"Location: \t https://example.com/x  \t\r\n"
			"Replay-Nonce: abc=\r\n"
			"Retry-After:   Wed, 21 Oct 2015 07:28:00 GMT \r\n"
			"Content-Length: 0005\r\n"
			"Content-Length: 5\r\n"
			"\r\n"
			"12345"), 0, 0, &r, &why);
	if (CHECK_INT(ret, 0)) {
		CHECK_INT(r.status, 200);
		CHECK_STR(r.location, "https://example.com/x");
		CHECK_STR(r.nonce, "");
		CHECK_STR(r.retry_after, "Wed, 21 Oct 2015 07:28:00 GMT");
		CHECK_STR(body_text(&r), "12345");
	}
	ret = HTTP_CASE("nonce with '/'", S("HTTP/1.1 200 OK\r\nReplay-Nonce: a/b\r\n"
			"Content-Length: 0\r\n\r\n"), 0, 0, &r, &why);
	if (CHECK_INT(ret, 0)) {
		CHECK_STR(r.nonce, "");
		CHECK_INT(r.body.len, 0);
	}
	test_http_terms();
	buf_free(&r.body);
	buf_free(&b);
	context[0] = 0;
}

static void test_http_bad(void)
{
	static const struct {
		const char *name;
		const char *data;
		size_t len;
		int head, end_error;
	} bad[] = {
		{ "bare LF", S("HTTP/1.1 200 OK\nContent-Length: 0\n\n"), 0, 0 },
		{ "bare LF in a header", S("HTTP/1.1 200 OK\r\nContent-Length: 0\n\r\n"), 0, 0 },
		{ "bare LF ends the headers", S("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\n"), 0, 0 },
		{ "NUL in a header", S("HTTP/1.1 200 OK\r\nX-A: a\0b\r\nContent-Length: 0\r\n\r\n"), 0, 0 },
		{ "NUL in the status line", S("HTTP/1.1 200 O\0K\r\n\r\n"), 0, 0 },
		{ "garbage status line", S("<html>hello</html>\r\n\r\n"), 0, 0 },
		{ "status line without code", S("HTTP/1.1 OK\r\n\r\n"), 0, 0 },
		{ "status code of 2 digits", S("HTTP/1.1 20 OK\r\n\r\n"), 0, 0 },
		{ "status code of 4 digits", S("HTTP/1.1 2000 OK\r\n\r\n"), 0, 0 },
		{ "status code and text", S("HTTP/1.1 200OK\r\n\r\n"), 0, 0 },
		{ "HTTP/2", S("HTTP/2 200\r\n\r\n"), 0, 0 },
		{ "status 100", S("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), 0, 0 },
		{ "status 101", S("HTTP/1.1 101 Switching Protocols\r\n\r\n"), 0, 0 },
		{ "empty response", S(""), 0, 0 },
		{ "end in the headers", S("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n"), 0, 0 },
		{ "error in the headers", S("HTTP/1.1 200 OK\r\nContent-"), 0, 1 },
		{ "header without colon", S("HTTP/1.1 200 OK\r\nContent-Length 0\r\n\r\n"), 0, 0 },
		{ "header with empty name", S("HTTP/1.1 200 OK\r\n: x\r\n\r\n"), 0, 0 },
		{ "space before colon", S("HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n"), 0, 0 },
		{ "folded header", S("HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 0\r\n\r\n"), 0, 0 },
		{ "Content-Length too large", S("HTTP/1.1 200 OK\r\nContent-Length: 131073\r\n\r\n"), 0, 0 },
		{ "Content-Length of 10 digits", S("HTTP/1.1 200 OK\r\nContent-Length: 0000000001\r\n\r\nx"), 0, 0 },
		{ "Content-Length huge", S("HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n"), 0, 0 },
		{ "Content-Length negative", S("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"), 0, 0 },
		{ "Content-Length empty", S("HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n"), 0, 0 },
		{ "Content-Length not a number", S("HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\nx"), 0, 0 },
		{ "Content-Length list", S("HTTP/1.1 200 OK\r\nContent-Length: 1, 1\r\n\r\nx"), 0, 0 },
		{ "two Content-Lengths", S("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx"), 0, 0 },
		{ "Content-Length and chunked", S("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
			"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"), 0, 0 },
		{ "chunked and Content-Length", S("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
			"Content-Length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n"), 0, 0 },
		{ "Transfer-Encoding gzip", S("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxx"), 0, 0 },
		{ "Transfer-Encoding gzip, chunked", S("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
			"0\r\n\r\n"), 0, 0 },
		{ "body shorter than Content-Length", S("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"), 0, 0 },
		{ "read error in the body", S("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"), 0, 1 },
		{ "read error in a close-delimited body", S("HTTP/1.1 200 OK\r\n\r\nabc"), 0, 1 },
		{ "chunk size of 9 digits", S("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
			"000000005\r\nhello\r\n0\r\n\r\n"), 0, 0 },
		{ "chunk size negative", S("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
			"-5\r\nhello\r\n0\r\n\r\n"), 0, 0 },
		{ "chunk size not hex", S("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
			"g\r\nhello\r\n0\r\n\r\n"), 0, 0 },
		{ "chunk size 0x", S("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
			"0x5\r\nhello\r\n0\r\n\r\n"), 0, 0 },
		{ "chunk size empty", S("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
			"\r\nhello\r\n0\r\n\r\n"), 0, 0 },
		{ "chunk size with a space first", S("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
			" 5\r\nhello\r\n0\r\n\r\n"), 0, 0 },
		{ "chunk size FFFFFFFF", S("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
			"FFFFFFFF\r\nhello\r\n0\r\n\r\n"), 0, 0 },
		{ "chunk longer than its size", S("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
			"3\r\nhello\r\n0\r\n\r\n"), 0, 0 },
		{ "chunked body cut short", S("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
			"5\r\nhel"), 0, 0 },
		{ "chunked without last chunk", S("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
			"5\r\nhello\r\n"), 0, 0 },
		{ "chunked without final CRLF", S("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
			"5\r\nhello\r\n0\r\n"), 0, 0 },
		{ "chunked with bare LF", S("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
			"5\nhello\n0\n\n"), 0, 0 },
		/* after a chunk size, whitespace may only come before a ';' (RFC 9112 7.1.1) */
		{ "chunk size, a space and more digits", S("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
			"5 6\r\nhello\r\n0\r\n\r\n"), 0, 0 },
		{ "chunk size, a space and a word", S("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
			"5 x\r\nhello\r\n0\r\n\r\n"), 0, 0 },
		/* a CR not before LF (RFC 9112 2.2, RFC 9110 5.5): refused, as bare LF and NUL are */
		{ "bare CR in a header value", S("HTTP/1.1 201 Created\r\nLocation: https://example.com/a\rb\r\n"
			"Content-Length: 0\r\n\r\n"), 0, 0 },
		{ "bare CR ends a header value", S("HTTP/1.1 201 Created\r\nLocation: https://example.com/a\r\r\n"
			"Content-Length: 0\r\n\r\n"), 0, 0 },
		{ "bare CR in a header name", S("HTTP/1.1 200 OK\r\n\rTransfer-Encoding: chunked\r\n\r\n"
			"5\r\nhello\r\n0\r\n\r\n"), 0, 0 },
		{ "Location too long", NULL, 0, 0, 0 },   /* made below */
	};
	struct resp r = { 0 };
	struct buf b = { 0 };
	const char *why;
	size_t i, start;
	int ret;

	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		const char *data = bad[i].data;
		size_t len = bad[i].len;

		if (!data) {
			b.len = 0;
			buf_str(&b, "HTTP/1.1 201 Created\r\nLocation: ");
			start = b.len;
			buf_str(&b, "https://example.com/");
			while (b.len - start < MAX_URL)          /* MAX_URL bytes: one too many */
				buf_str(&b, "a");
			buf_str(&b, "\r\nContent-Length: 0\r\n\r\n");
			data = b.p;
			len = b.len;
		}
		ret = http_case(__LINE__, bad[i].name, data, len, bad[i].head, bad[i].end_error, &r, &why);
		CHECK_INT(ret, -1);
		CHECK(why != NULL);
	}
	buf_free(&r.body);
	buf_free(&b);
	context[0] = 0;
}

/* Limits: MAX_LINE, MAX_HEADERS and MAX_BODY, each just inside and just past. */
static void test_http_limits(void)
{
	struct resp r = { 0 };
	struct buf b = { 0 }, big = { 0 };
	const char *why;
	int k, ret;

	/* a line of MAX_LINE bytes with its CRLF is fine */
	b.len = 0;
	buf_str(&b, "HTTP/1.1 200 OK\r\nX-Long: ");
	while (b.len < 17 + MAX_LINE - 2)
		buf_str(&b, "a");
	buf_str(&b, "\r\nContent-Length: 0\r\n\r\n");
	ret = HTTP_CASE("header line of MAX_LINE bytes", b.p, b.len, 0, 0, &r, &why);
	CHECK_INT(ret, 0);
	b.len = 0;
	buf_str(&b, "HTTP/1.1 200 OK\r\nX-Long: ");
	while (b.len < 17 + MAX_LINE - 1)         /* with its CRLF, MAX_LINE + 1 bytes */
		buf_str(&b, "a");
	buf_str(&b, "\r\nContent-Length: 0\r\n\r\n");
	ret = HTTP_CASE("header line longer than MAX_LINE", b.p, b.len, 0, 0, &r, &why);
	CHECK_INT(ret, -1);
	CHECK(why != NULL);
	b.len = 0;
	buf_str(&b, "HTTP/1.1 200 ");
	while (b.len < MAX_LINE + 1)
		buf_str(&b, "O");
	buf_str(&b, "\r\nContent-Length: 0\r\n\r\n");
	ret = HTTP_CASE("status line longer than MAX_LINE", b.p, b.len, 0, 0, &r, &why);
	CHECK_INT(ret, -1);
	CHECK(why != NULL);

	/* MAX_HEADERS header lines, then one more */
	b.len = 0;
	buf_str(&b, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n");
	for (k = 1; k < MAX_HEADERS; k++)
		buf_str(&b, "X-Header: value\r\n");
	buf_str(&b, "\r\n");
	ret = HTTP_CASE("MAX_HEADERS headers", b.p, b.len, 0, 0, &r, &why);
	CHECK_INT(ret, 0);
	b.len -= 2;
	buf_str(&b, "X-Header: value\r\n\r\n");
	ret = HTTP_CASE("MAX_HEADERS + 1 headers", b.p, b.len, 0, 0, &r, &why);
	CHECK_INT(ret, -1);
	CHECK(why != NULL);

	/* MAX_HEADERS trailer lines, then one more */
	b.len = 0;
	buf_str(&b, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n");
	for (k = 0; k < MAX_HEADERS; k++)
		buf_str(&b, "X-Trailer: value\r\n");
	buf_str(&b, "\r\n");
	ret = HTTP_CASE("MAX_HEADERS trailers", b.p, b.len, 0, 0, &r, &why);
	CHECK_INT(ret, 0);
	b.len -= 2;
	buf_str(&b, "X-Trailer: value\r\n\r\n");
	ret = HTTP_CASE("MAX_HEADERS + 1 trailers", b.p, b.len, 0, 0, &r, &why);
	CHECK_INT(ret, -1);
	CHECK(why != NULL);

	/* the longest Location kept: MAX_URL - 1 bytes (one more is in test_http_bad) */
	b.len = 0;
	buf_str(&b, "HTTP/1.1 201 Created\r\nLocation: https://example.com/");
	while (b.len < 32 + MAX_URL - 1)
		buf_str(&b, "a");
	buf_str(&b, "\r\nContent-Length: 0\r\n\r\n");
	ret = HTTP_CASE("Location of MAX_URL - 1 bytes", b.p, b.len, 0, 0, &r, &why);
	if (CHECK_INT(ret, 0))
		CHECK_INT(strlen(r.location), MAX_URL - 1);

	/* a body of MAX_BODY bytes, in each framing, and one byte more */
	for (k = 0; k < MAX_BODY + 1; k++)
		buf_add(&big, k % 64 ? "x" : "\n", 1);
	b.len = 0;
	buf_str(&b, "HTTP/1.1 200 OK\r\nContent-Length: 131072\r\n\r\n");
	buf_add(&b, big.p, MAX_BODY);
	ret = HTTP_CASE("Content-Length: MAX_BODY", b.p, b.len, 0, 0, &r, &why);
	if (CHECK_INT(ret, 0))
		CHECK_MEM(r.body.p, r.body.len, big.p, MAX_BODY);
	b.len = 0;
	buf_str(&b, "HTTP/1.1 200 OK\r\nContent-Length: 131073\r\n\r\n");
	buf_add(&b, big.p, MAX_BODY + 1);
	ret = HTTP_CASE("Content-Length: MAX_BODY + 1", b.p, b.len, 0, 0, &r, &why);
	CHECK_INT(ret, -1);
	CHECK_STR(why, TOO_LARGE);
	b.len = 0;
	buf_str(&b, "HTTP/1.1 200 OK\r\n\r\n");
	buf_add(&b, big.p, MAX_BODY);
	ret = HTTP_CASE("close-delimited MAX_BODY", b.p, b.len, 0, 0, &r, &why);
	if (CHECK_INT(ret, 0))
		CHECK_MEM(r.body.p, r.body.len, big.p, MAX_BODY);
	buf_add(&b, "x", 1);
	ret = HTTP_CASE("close-delimited MAX_BODY + 1", b.p, b.len, 0, 0, &r, &why);
	CHECK_INT(ret, -1);
	CHECK(why != NULL);
	b.len = 0;
	buf_str(&b, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10000\r\n");
	buf_add(&b, big.p, 0x10000);
	buf_str(&b, "\r\n10000\r\n");
	buf_add(&b, big.p + 0x10000, 0x10000);
	buf_str(&b, "\r\n0\r\n\r\n");
	ret = HTTP_CASE("chunked MAX_BODY", b.p, b.len, 0, 0, &r, &why);
	if (CHECK_INT(ret, 0))
		CHECK_MEM(r.body.p, r.body.len, big.p, MAX_BODY);
	b.len -= 5;                                  /* "0\r\n\r\n": before the last chunk */
	buf_str(&b, "1\r\nx\r\n0\r\n\r\n");
	ret = HTTP_CASE("chunked MAX_BODY + 1", b.p, b.len, 0, 0, &r, &why);
	CHECK_INT(ret, -1);
	CHECK(why != NULL);

	buf_free(&r.body);
	buf_free(&b);
	buf_free(&big);
	context[0] = 0;
}

/* ===================== 5. URLs ===================== */

static void test_url(void)
{
	static const struct {
		const char *url;
		int https;
		const char *host, *port, *path;
	} good[] = {
		{ "https://example.com", 1, "example.com", "443", "/" },
		{ "https://example.com/", 1, "example.com", "443", "/" },
		{ "https://example.com/dir/x?y=1&z=%20", 1, "example.com", "443", "/dir/x?y=1&z=%20" },
		{ "http://example.com:8080/a", 0, "example.com", "8080", "/a" },
		{ "https://acme-v02.api.letsencrypt.org/directory", 1, "acme-v02.api.letsencrypt.org", "443", "/directory" },
		{ "https://127.0.0.1:14000/dir", 1, "127.0.0.1", "14000", "/dir" },
		{ "https://[::1]:8443/dir", 1, "::1", "8443", "/dir" },
		{ "https://[::1]", 1, "::1", "443", "/" },
		{ "http://[2001:db8::1]/x", 0, "2001:db8::1", "80", "/x" },
		{ "https://a:1/", 1, "a", "1", "/" },
		{ "https://a:65535/", 1, "a", "65535", "/" },
		/* host names compare case-insensitively: kept lower-cased */
		{ "https://LocalHost:14000/Dir", 1, "localhost", "14000", "/Dir" },
		{ "https://[2001:DB8::A]/", 1, "2001:db8::a", "443", "/" },
	};
	static const char *const bad[] = {
		"ftp://example.com/", "example.com", "", "https:/x", "https//x", "file:///etc/passwd",
		"https://a@b/", "https://user:pw@example.com/", "https://example.com/a b",
		"https://example.com/a\tb", "https://example.com/a\x7f", "https://example.com/\xc3\xa9",
		"https://example.com/a\r\nHost: evil", "https://example.com/\x01",
		"https://example.com:0/", "https://example.com:65536/", "https://example.com:12a/",
		"https://example.com:-1/", "https://example.com:/x", "https://example.com:",
		"https://example.com:123456/", "https:///x", "https://", "https://:443/",
		"https://ex_ample.com/", "https://exa mple.com/", "https://example.com?x",
		"https://[::1/", "https://[::1]x/", "https://[]/", "https://[::1]:/x", "https://[::g]/",
		"https://[::1%eth0]/",
		/*
		 * brackets hold an IPv6 address and nothing else (RFC 3986 3.2.2): not an IPv4 one,
		 * a number or a name, which getaddrinfo would take (0.0.0.0, 0.0.0.12, a DNS lookup)
		 */
		"https://[1.2.3.4]/", "https://[0]:8443/", "https://[12]/", "https://[cafe]/",
		"https://[dead.beef]/", "https://[1::2::3]/", "https://[::1.2.3]/", "https://[12345::1]/",
		"https://[1:2:3:4:5:6:7:8:9]/",
	};
	struct url u;
	struct buf b = { 0 };
	size_t i;

	for (i = 0; i < sizeof good / sizeof good[0]; i++) {
		set_context("url_parse %s", good[i].url);
		if (!CHECK_INT(url_parse(good[i].url, &u), 0))
			continue;
		CHECK_INT(u.https, good[i].https);
		CHECK_STR(u.host, good[i].host);
		CHECK_STR(u.port, good[i].port);
		CHECK_STR(u.path, good[i].path);
	}
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		set_context("url_parse %s", bad[i]);
		CHECK_INT(url_parse(bad[i], &u), -1);
	}

	/* a host of 255 characters fits, 256 do not; a path must stay under MAX_URL */
	set_context("url_parse long host");
	buf_str(&b, "https://");
	while (b.len < 8 + 255)
		buf_str(&b, "h");
	CHECK_INT(url_parse(b.p, &u), 0);
	buf_str(&b, "h");
	CHECK_INT(url_parse(b.p, &u), -1);
	set_context("url_parse long path");
	b.len = 0;
	buf_str(&b, "https://example.com/");
	while (b.len < 19 + MAX_URL - 1)
		buf_str(&b, "p");
	CHECK_INT(url_parse(b.p, &u), 0);
	buf_str(&b, "p");
	CHECK_INT(url_parse(b.p, &u), -1);
	buf_free(&b);
	context[0] = 0;
}

/* ===================== 4. command line ===================== */

/* --ca with a URL too long for URL/directory: in a child, as a usage error exits */
static void parse_ca(const char *url)
{
	char *argv[] = { "acme-tiny", "--account-key", "k", "--csr", "c", "--acme-dir", "d",
			 "--ca", (char *)url, NULL };

	xparse_args(9, argv);
}

static void test_parse_args(void)
{
	char *argv[] = { "acme-tiny", "--account-key", "k", "--csr", "c", "--acme-dir", "d",
			 "--contact", "mailto:a@x", "mailto:b@x", "--contact", "mailto:c@x", NULL };

	char *ca[] = { "acme-tiny", "--account-key", "k", "--csr", "c", "--acme-dir", "d",
		       "--ca", "https://ca.example/acme", NULL };

	set_context("parse_args --contact twice");
	xparse_args(12, argv);
	CHECK_INT(run.n_contacts, 1);
	CHECK_STR(run.contacts[0], "mailto:c@x");
	/* acme_tiny.py's deprecated --ca URL: the directory is URL/directory */
	set_context("parse_args --ca");
	xparse_args(9, ca);
	CHECK_STR(run.directory, "https://ca.example/acme/directory");
	/*
	 * acme_tiny.py ignores a --ca that is its default, https://acme-v02.api.letsencrypt.org
	 * (CA + "/directory" if CA != DEFAULT_CA else directory_url): with --directory-url as
	 * well, that URL is the CA's, not Let's Encrypt's production
	 */
	set_context("parse_args --ca as acme_tiny.py's default, with --directory-url");
	{
		char *both[] = { "acme-tiny", "--account-key", "k", "--csr", "c", "--acme-dir", "d",
				 "--ca", "https://acme-v02.api.letsencrypt.org",
				 "--directory-url", "https://ca.example/dir", NULL };

		run.ca = NULL;
		xparse_args(11, both);
		CHECK_STR(run.directory, "https://ca.example/dir");
		run.ca = NULL;
	}
	/* a --ca too long for MAX_URL is refused, not cut into another URL that is fetched */
	set_context("parse_args --ca too long");
	{
		static char url[MAX_URL] = "https://ca.example/";

		memset(url + 19, 'a', MAX_URL - 10 - 19);       /* with /directory, 1 byte over */
		CHECK_INT(in_child(parse_ca, url), 1);
		url[strlen(url) - 1] = 0;                       /* at the limit: fine */
		CHECK_INT(in_child(parse_ca, url), 0);
	}
	context[0] = 0;
}

/* ===================== 2. DNS: dns-persist-01 records, the hook ===================== */

#ifndef UNIT_NO_BEARSSL
static void persist_line(struct acme *a, const char *json, const char *name, int wild,
			 struct buf *out)
{
	struct json j = { 0 };
	static struct names ns;         /* the order's names: name, and *.name if wild */
	char list[MAX_NAME * 2 + 4];

	snprintf(list, sizeof list, wild ? "%s,*.%s" : "%s", name, name);
	CHECK(names_from_list(list, &ns) == 0);
	out->len = 0;
	buf_str(out, "");
	if (json) {
		CHECK(json_parse(&j, json, strlen(json)) == 0);
		xpersist_record(out, a, &ns, name, &j, find_challenge(&j, "dns-persist-01"));
	} else {
		xpersist_record(out, a, &ns, name, NULL, -1);
	}
	json_free(&j);
}

static const char *hostile_json;

static void persist_hostile(const char *prefix)
{
	static struct key k;
	static struct acme a;
	struct buf b = { 0 };

	snprintf(k.thumbprint, sizeof k.thumbprint, "%s", "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
	a.key = &k;
	snprintf(a.kid, sizeof a.kid, "%s", "https://ca.example/acct/123");
	snprintf(a.hash_prefix, sizeof a.hash_prefix, "%s", prefix);
	persist_line(&a, hostile_json, "example.com", 0, &b);
	buf_free(&b);
}

/*
 * xpersist_record: the draft's hashed-URI example (draft-02), the account
 * URL (draft-01), where the issuer comes from, policy=wildcard; what a CA
 * sends that cannot go into a TXT record ends the run.
 */
static void test_persist_record(void)
{
	static struct key k;
	static struct acme a;
	struct buf b = { 0 };
	static const char *const chal =
		"{\"challenges\":[{\"type\":\"http-01\"},{\"type\":\"dns-persist-01\","
		"\"issuer-domain-names\":[\"old.example\"],\"issuerDomainNames\":[\"new.example\"]}]}";
	static const char *const chal01 =
		"{\"challenges\":[{\"type\":\"dns-persist-01\",\"issuer-domain-names\":[\"pebble.letsencrypt.org\"]}]}";
	static const char *const bad[] = {
		"{\"challenges\":[{\"type\":\"dns-persist-01\",\"issuerDomainNames\":[\"a\\\"b\"]}]}",
		"{\"challenges\":[{\"type\":\"dns-persist-01\",\"issuerDomainNames\":[\"a;b\"]}]}",
		"{\"challenges\":[{\"type\":\"dns-persist-01\",\"issuerDomainNames\":[\"a b\"]}]}",
		"{\"challenges\":[{\"type\":\"dns-persist-01\",\"issuerDomainNames\":[\"A\\u0001\"]}]}",
		"{\"challenges\":[{\"type\":\"dns-persist-01\",\"issuerDomainNames\":[]}]}",
		"{\"challenges\":[{\"type\":\"dns-persist-01\",\"issuerDomainNames\":\"ca.example\"}]}",
	};
	size_t i;

	set_context("xpersist_record");
	snprintf(k.thumbprint, sizeof k.thumbprint, "%s", "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
	a.key = &k;
	snprintf(a.kid, sizeof a.kid, "%s", "https://ca.example/acct/123");
	snprintf(a.hash_prefix, sizeof a.hash_prefix, "%s", "acct:");
	snprintf(a.issuer, sizeof a.issuer, "%s", "ca.example");
	persist_line(&a, NULL, "example.com", 0, &b);
	CHECK_STR(b.p, "_validation-persist.example.com. IN TXT \"ca.example; accounturi="
		  "acct:sha-256/5SQm7n6tPh2-PlLbCKGnViTXX5z19SCN4cPGQHSk-kw\"");
	persist_line(&a, chal, "example.com", 1, &b);   /* the directory's issuer first */
	CHECK_STR(b.p, "_validation-persist.example.com. IN TXT \"ca.example; accounturi="
		  "acct:sha-256/5SQm7n6tPh2-PlLbCKGnViTXX5z19SCN4cPGQHSk-kw; policy=wildcard\"");
	a.hash_prefix[0] = a.issuer[0] = 0;             /* draft-01: the URL, the challenge's */
	persist_line(&a, chal01, "example.com", 0, &b);
	CHECK_STR(b.p, "_validation-persist.example.com. IN TXT \"pebble.letsencrypt.org;"
		  " accounturi=https://ca.example/acct/123\"");
	persist_line(&a, chal, "x.example", 0, &b);     /* draft-02's field before draft-01's */
	CHECK_STR(b.p, "_validation-persist.x.example. IN TXT \"new.example;"
		  " accounturi=https://ca.example/acct/123\"");
	snprintf(a.caa, sizeof a.caa, "%s", "CAA.Example");     /* DNS names: any case */
	persist_line(&a, NULL, "x.example", 0, &b);     /* else the CAA identity */
	CHECK_STR(b.p, "_validation-persist.x.example. IN TXT \"caa.example;"
		  " accounturi=https://ca.example/acct/123\"");
	buf_free(&b);
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		set_context("xpersist_record: hostile issuer %zu", i);
		hostile_json = bad[i];
		CHECK_INT(in_child(persist_hostile, ""), 1);
	}
	hostile_json = chal01;
	set_context("xpersist_record: hostile accountHashPrefix");
	CHECK_INT(in_child(persist_hostile, "a\"b/"), 1);
	CHECK_INT(in_child(persist_hostile, "a;b/"), 1);
	CHECK_INT(in_child(persist_hostile, "a b/"), 1);
	CHECK_INT(in_child(persist_hostile, "a\\b/"), 1);
	CHECK_INT(in_child(persist_hostile, "a\nb/"), 1);     /* a line of its own in the zone */
	CHECK_INT(in_child(persist_hostile, "a\tb/"), 1);
	CHECK_INT(in_child(persist_hostile, "a\x7f/"), 1);
	CHECK_INT(in_child(persist_hostile, "a\x9b/"), 1);
	CHECK_INT(in_child(persist_hostile, "acct:"), 0);
	context[0] = 0;
}

/* xpersist_records: one line per base name, policy=wildcard with its *. name; no addresses. */
static void test_persist_records(void)
{
	static struct key k;
	static struct acme a;
	static struct names ns;
	struct buf b = { 0 };

	set_context("xpersist_records");
	snprintf(k.thumbprint, sizeof k.thumbprint, "%s", "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
	a.key = &k;
	snprintf(a.kid, sizeof a.kid, "%s", "https://ca.example/acct/1");
	snprintf(a.issuer, sizeof a.issuer, "%s", "ca.example");
	CHECK(names_from_list("a.example,*.b.example,*.a.example,1.2.3.4,c.example", &ns) == 0);
	xpersist_records(&a, &ns, &b);
	CHECK_STR(b.p,
		  "_validation-persist.a.example. IN TXT \"ca.example; accounturi=https://ca.example/acct/1;"
		  " policy=wildcard\"\n"
		  "_validation-persist.b.example. IN TXT \"ca.example; accounturi=https://ca.example/acct/1;"
		  " policy=wildcard\"\n"
		  "_validation-persist.c.example. IN TXT \"ca.example; accounturi=https://ca.example/acct/1\"\n");
	buf_free(&b);
	context[0] = 0;
}

/* xfill_taken: IDENT without "*.", AUTH the key authorization, or for dns-01 its digest (8.4). */
static void test_fill_taken(void)
{
	static struct key k;
	static struct acme a;
	static const char *const chal =
		"{\"challenges\":[{\"type\":\"dns-01\",\"token\":\"evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA\"}]}";
	struct ident id = { "dns", "*.example.org" };
	struct json j = { 0 };
	struct taken t;

	set_context("xfill_taken");
	snprintf(k.thumbprint, sizeof k.thumbprint, "%s", "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
	a.key = &k;
	CHECK(json_parse(&j, chal, strlen(chal)) == 0);
	xfill_taken(&t, &a, &id, &j, find_challenge(&j, "dns-01"), "dns-01");
	CHECK_STR(t.ident, "example.org");
	CHECK_STR(t.type, "dns-01");
	CHECK_STR(t.token, "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA");
	CHECK_STR(t.auth, "ZTRx1Ckl1-tM05o5zaizTTA0yUy5AGereMgSNWC6Ll8");
	CHECK(!t.file);
	xfill_taken(&t, &a, &id, &j, find_challenge(&j, "dns-01"), "http-01");
	CHECK_STR(t.auth, "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA."
		  "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
	json_free(&j);
	context[0] = 0;
}

static const char *take_json;

static void take_one(const char *name)
{
	static struct key k;
	static struct acme a;
	struct ident id = { "dns", "" };
	struct json j = { 0 };

	snprintf(k.thumbprint, sizeof k.thumbprint, "%s", "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
	a.key = &k;
	snprintf(id.value, sizeof id.value, "%s", name);
	if (json_parse(&j, take_json, strlen(take_json)) == 0)
		xtake_challenge(&a, &id, &j);
}

/*
 * xtake_challenge: the hook is offered http-01 and dns-01 in the CA's
 * order, a wildcard's dns-01 only; a CA that offers a wildcard name
 * http-01 alone gets neither a file in --acme-dir nor the hook's begin.
 */
static void test_take_challenge(void)
{
	static const char *const wild_http =
		"{\"challenges\":[{\"type\":\"http-01\",\"url\":\"https://ca.example/c/1\",\"token\":\"tokW\"}]}";
	static const char *const three =
		"{\"challenges\":[{\"type\":\"tls-alpn-01\",\"url\":\"https://ca.example/c/1\",\"token\":\"tokT\"},"
		"{\"type\":\"http-01\",\"url\":\"https://ca.example/c/2\",\"token\":\"tokH\"},"
		"{\"type\":\"dns-01\",\"url\":\"https://ca.example/c/3\",\"token\":\"tokD\"}]}";
	/* types the hook must never hear of, one short enough for xtake_challenge's type[8] */
	static const char *const others =
		"{\"challenges\":[{\"type\":\"new-01\",\"url\":\"https://ca.example/c/1\",\"token\":\"tokN\"},"
		"{\"type\":\"dns-persist-01\",\"url\":\"https://ca.example/c/2\",\"token\":\"tokP\"},"
		"{\"type\":\"tls-alpn-01\",\"url\":\"https://ca.example/c/3\",\"token\":\"tokT\"},"
		"{\"type\":\"http-01\",\"url\":\"https://ca.example/c/4\",\"token\":\"tokH\"},"
		"{\"type\":\"dns-01\",\"url\":\"https://ca.example/c/5\",\"token\":\"tokD\"}]}";
	const char *saved_hook = run.hook, *saved_dir = run.acme_dir;
	int saved_check = run.disable_check;
	char hook[512];
	struct buf b = { 0 };

	set_context("xtake_challenge");
	snprintf(hook, sizeof hook, "%s", tpath("take.sh"));
	CHECK(sh("cat > take.sh <<'E'\n#!/bin/sh\n"
		 "cd \"$(dirname \"$0\")\"\n"
		 "echo \"$1 $2 $3\" >> took\n"
		 "[ \"$2\" = dns-01 ]\nE\nchmod +x take.sh") == 0);
	take_json = wild_http;                          /* --acme-dir alone */
	run.acme_dir = tmpdir;
	run.disable_check = 1;
	acme_fd = open(tmpdir, O_RDONLY | O_DIRECTORY);
	CHECK(acme_fd >= 0);
	CHECK_INT(in_child(take_one, "*.example.org"), 1);
	CHECK(access(tpath("tokW"), F_OK) != 0);
	close(acme_fd);
	acme_fd = -1;
	run.acme_dir = NULL;                            /* --hook alone */
	run.hook = hook;
	CHECK_INT(in_child(take_one, "*.example.org"), 1);
	CHECK(access(tpath("took"), F_OK) != 0);
	take_json = three;
	CHECK_INT(in_child(take_one, "example.org"), 0);
	CHECK(slurp("took", &b) == 0 && b.len == 51 &&
	      !memcmp(b.p, "begin http-01 example.org\nbegin dns-01 example.org\n", 51));
	/* an unknown type, dns-persist-01, tls-alpn-01: skipped, not offered to the hook */
	take_json = others;
	CHECK(unlink(tpath("took")) == 0);
	CHECK_INT(in_child(take_one, "example.org"), 0);
	CHECK(slurp("took", &b) == 0 && b.len == 51 &&
	      !memcmp(b.p, "begin http-01 example.org\nbegin dns-01 example.org\n", 51));
	run.hook = saved_hook;
	run.acme_dir = saved_dir;
	run.disable_check = saved_check;
	buf_free(&b);
	context[0] = 0;
}
#endif

/*
 * run_hook: the argv as uacme's, no shell (a token with spaces or $ stays
 * one argument), stdin /dev/null, the exit status; a hook still running at
 * the deadline is killed with its process group, children and all.
 */
static void test_run_hook(void)
{
	struct taken t = { 0, "dns-01", "a.example", "tok $(x) ;", "auth" };
	struct sigaction ign = { .sa_handler = SIG_IGN }, old_pipe;
	const char *saved = run.hook;
	unsigned long long blocked = 1, ignored = ~0ULL;
	long long start;
	char got[256] = "", hook[512];
	FILE *f;

	set_context("run_hook");
	snprintf(hook, sizeof hook, "%s", tpath("hook.sh"));     /* tpath's buffer is reused */
	run.hook = hook;
	CHECK(sh("cat > hook.sh <<'E'\n#!/bin/sh\n"
		 "cd \"$(dirname \"$0\")\"\n"
		 "printf '%%s|' \"$@\" > args; read x && echo stdin >> args\n"
		 "[ \"$1\" = begin ] && exit 3\n"
		 "[ \"$1\" = sleep ] && { sleep 30 & echo $! > child; wait; }\n"
		 "[ \"$1\" = sigs ] && exec grep '^Sig[BI]' /proc/self/status > sigs\n"
		 "[ \"$1\" = die ] && kill -9 $$\n"
		 "exit 0\nE\nchmod +x hook.sh") == 0);
	CHECK_INT(run_hook("begin", &t, now_ms() + 10000), 3);
	f = fopen(tpath("args"), "r");
	CHECK(f && fgets(got, sizeof got, f));
	if (f)
		fclose(f);
	CHECK_STR(got, "begin|dns-01|a.example|tok $(x) ;|auth|");
	CHECK_INT(run_hook("done", &t, now_ms() + 10000), 0);
	start = now_ms();
	CHECK_INT(run_hook("sleep", &t, now_ms() + 300), -1);
	CHECK(now_ms() - start < 5000);
	/* its child is gone too: dead, or a zombie where init is slow to reap */
	CHECK(sh("sleep 0.2; [ -s child ] && { s=$(cut -d' ' -f3 /proc/$(cat child)/stat);"
		 " [ -z \"$s\" ] || [ \"$s\" = Z ]; }") == 0);
	CHECK_INT(run_hook("die", &t, now_ms() + 10000), -1);         /* killed: no answer */
	/* one that SIGKILL does not end is left a second later: never a wait without end */
	stuck = 1;
	n_blocking_waits = 0;
	start = now_ms();
	CHECK_INT(run_hook("sleep", &t, now_ms() + 200), -1);
	CHECK(now_ms() - start >= 1200 && now_ms() - start < 3000);
	CHECK_INT(n_blocking_waits, 0);
	stuck = 0;
	CHECK_INT(waitpid(last_fork, NULL, 0), last_fork);      /* the test reaps it */
	{	/* past the deadline (on_signal's 4 s used up): no hook is started, to be killed */
		int forks = n_forks;
		CHECK_INT(run_hook("done", &t, now_ms() - 1), -1);
		CHECK_INT(n_forks, forks);
	}
	/* from fail() or on_signal: what we hold or ignore is not the hook's */
	sigaction(SIGPIPE, &ign, &old_pipe);
	hold_signals(1);
	CHECK_INT(run_hook("sigs", &t, now_ms() + 10000), 0);
	hold_signals(0);
	sigaction(SIGPIPE, &old_pipe, NULL);
	f = fopen(tpath("sigs"), "r");
	CHECK(f && fscanf(f, "SigBlk: %llx SigIgn: %llx", &blocked, &ignored) == 2);
	if (f)
		fclose(f);
	CHECK_INT(blocked, 0);
	CHECK_INT(ignored >> (SIGPIPE - 1) & 1, 0);
	run.hook = tpath("no-such-hook");
	CHECK_INT(run_hook("begin", &t, now_ms() + 10000), 127);
	run.hook = saved;
	context[0] = 0;
}

/* ===================== 2. the certificate chain ===================== */

#ifndef UNIT_NO_BEARSSL
static const struct names no_names;

/* cert_is_ours: exactly the names asked for, in any order (cc.key's certificates). */
static void test_cert_is_ours_names(void)
{
	static const struct { const char *list; int want; } cases[] = {
		{ "a.test,b.test", 1 }, { "b.test,a.test", 1 }, { "a.test", 0 },
		{ "a.test,b.test,c.test", 0 }, { "a.test,c.test", 0 }, { "a.test,b.test,1.2.3.4", 0 },
	};
	static struct names ns;
	struct buf csr = { 0 }, pem = { 0 };
	size_t i;

	if (!CHECK_INT(sh("openssl req -x509 -key cc.key -subj /CN=a.test -days 1 -out ab.pem "
			  "-addext subjectAltName=DNS:a.test,DNS:b.test"), 0) ||
	    !CHECK_INT(slurp("ab.pem", &pem), 0) || !CHECK_INT(slurp("cc.der", &csr), 0))
		return;
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		set_context("cert_is_ours: a certificate for a.test and b.test, asked for %s",
			    cases[i].list);
		CHECK_INT(names_from_list(cases[i].list, &ns), 0);
		CHECK_INT(cert_is_ours(&pem, &csr, &ns, -1), cases[i].want);
	}
	buf_free(&csr);
	buf_free(&pem);
}

/*
 * cert_is_ours: an IP address asked for must be the certificate's iPAddress name; a dNSName
 * that reads as one is a DNS name (RFC 5280 4.2.1.6), which no TLS client takes for the address.
 */
static void test_cert_is_ours_ip_as_dns_name(void)
{
	static const struct { const char *san; int want; } cases[] = {
		{ "IP:192.0.2.1", 1 }, { "DNS:192.0.2.1", 0 }, { "IP:2001:db8::1", 0 },
	};
	static struct names ns;
	struct buf csr = { 0 }, pem = { 0 };
	size_t i;

	if (!CHECK_INT(slurp("cc.der", &csr), 0))
		return;
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		set_context("cert_is_ours: a certificate for %s, asked for 192.0.2.1", cases[i].san);
		if (!CHECK_INT(sh("openssl req -x509 -key cc.key -subj /CN=ip.test -days 1 -out "
				  "ip.pem -addext subjectAltName=%s", cases[i].san), 0) ||
		    !CHECK_INT(slurp("ip.pem", &pem), 0))
			continue;
		CHECK_INT(names_from_list("192.0.2.1", &ns), 0);
		CHECK_INT(cert_is_ours(&pem, &csr, &ns, -1), cases[i].want);
	}
	buf_free(&csr);
	buf_free(&pem);
}

/* check_chain: PEM certificates and nothing else; cert_is_ours: for the CSR's key and names. */
static void test_check_chain(void)
{
	struct buf b = { 0 }, pem = { 0 }, der = { 0 };
	char label[32];
	size_t pos;
	static const char cert[] = "-----BEGIN CERTIFICATE-----\n";

	set_context("check_chain");
	CHECK(check_chain(&b) < 0);
	buf_str(&b, cert);
	CHECK(check_chain(&b) < 0);                 /* no END */
	b.len = 0;
	buf_str(&b, "junk\n");
	CHECK(check_chain(&b) < 0);
	if (CHECK_INT(sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
			 "-keyout cc.key -out cc.pem -subj /CN=chain.test -days 1"), 0) &&
	    CHECK_INT(slurp("cc.pem", &pem), 0)) {
		static const char bad_der[] = "-----BEGIN CERTIFICATE-----\nMAMCAQA=\n-----END CERTIFICATE-----\n";
		static const struct { const char *before, *between, *after; int want; } cases[] = {
			{ "", NULL, "", 0 }, { "", "", "", 0 }, { "\n", "\n\n", "\r\n", 0 },
			{ "text\n", NULL, "", -1 }, { "", "text\n", "", -1 }, { "", NULL, "text", -1 },
			{ "", bad_der, "", -1 }, { "", NULL, bad_der, -1 },
			{ "-----BEGIN X509 CRL-----\nMAMCAQA=\n-----END X509 CRL-----\n", NULL, "", -1 },
			{ "\xEF\xBB\xBF", NULL, "", -1 },     /* a key file may have a BOM; a chain not */
			{ "\r", NULL, "", -1 }, { "", "\r", "", -1 }, { "", NULL, "\r", -1 },  /* bare CR */
			{ "\r\n\n", "\n\r\n", "\n", 0 },
		};
		size_t i, k;

		for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
			set_context("check_chain case %zu", i);
			b.len = 0;
			buf_cat(&b, cases[i].before, pem.p, NULL);
			if (cases[i].between)
				buf_cat(&b, cases[i].between, pem.p, NULL);
			buf_str(&b, cases[i].after);
			CHECK_INT(check_chain(&b), cases[i].want);
		}
		set_context("check_chain, two blocks on one line");
		b.len = 0;
		buf_add(&b, pem.p, pem.len - 1);            /* without its last newline */
		buf_str(&b, pem.p);
		CHECK_INT(check_chain(&b), -1);
		set_context("check_chain, two blocks joined by a bare CR");
		b.len = 0;
		buf_add(&b, pem.p, pem.len - 1);
		buf_cat(&b, "\r", pem.p, NULL);
		CHECK_INT(check_chain(&b), -1);
		set_context("check_chain, a bare CR after BEGIN");
		b.len = 0;
		buf_str(&b, pem.p);
		*strchr(b.p, '\n') = '\r';
		CHECK_INT(check_chain(&b), -1);
		pos = 0;
		CHECK_INT(pem_next(&b, &pos, label, sizeof label, &der), -1);   /* a key file too */
		set_context("check_chain, a blank line inside");
		b.len = 0;
		k = (size_t)(strchr(strchr(pem.p, '\n') + 1, '\n') + 1 - pem.p);   /* after line 2 */
		buf_add(&b, pem.p, k);
		buf_cat(&b, "\n", pem.p + k, NULL);
		CHECK_INT(check_chain(&b), -1);
		set_context("cert_is_ours: the key");
		CHECK_INT(sh("openssl req -new -key cc.key -subj /CN=x -outform DER -out cc.der && "
			     "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
			     "-keyout other.key -subj /CN=x -outform DER -out other.der"), 0);
		CHECK_INT(slurp("cc.der", &b), 0);
		CHECK(cert_is_ours(&pem, &b, &no_names, -1));   /* no subjectAltName: no names */
		b.len -= 10;                                /* truncated: no key to compare */
		CHECK(!cert_is_ours(&pem, &b, &no_names, -1));
		CHECK_INT(slurp("other.der", &b), 0);
		CHECK(!cert_is_ours(&pem, &b, &no_names, -1));
		test_cert_is_ours_names();
		test_cert_is_ours_ip_as_dns_name();
		set_context("check_chain, a certificate under another label");
		CHECK_INT(sh("sed 's/CERTIFICATE/TRUSTED CERTIFICATE/' cc.pem > cc-trusted.pem"), 0);
		CHECK_INT(slurp("cc-trusted.pem", &b), 0);
		buf_str(&pem, b.p);
		CHECK_INT(check_chain(&pem), -1);
		pem.len -= b.len;
		pem.p[pem.len] = 0;
		CHECK_INT(check_chain(&pem), 0);
		set_context("check_chain with CR CR LF (a CRLF file saved again on Windows)");
		CHECK_INT(sh("sed 's/$/\\r\\r/' cc.pem > cc-crcrlf.pem"), 0);
		CHECK_INT(slurp("cc-crcrlf.pem", &b), 0);
		CHECK_INT(check_chain(&b), 0);
		pos = 0;
		CHECK_INT(pem_next(&b, &pos, label, sizeof label, &der), 1);
		set_context("check_chain with CRLF");
		CHECK_INT(sh("sed 's/$/\\r/' cc.pem > cc-crlf.pem"), 0);
		CHECK_INT(slurp("cc-crlf.pem", &b), 0);
		CHECK_INT(check_chain(&b), 0);
		b.p[b.len / 2] = ' ';                   /* a space inside the base64 */
		CHECK_INT(check_chain(&b), -1);
	}
	buf_free(&pem);
	buf_free(&der);
	context[0] = 0;
	buf_free(&b);
}

/*
 * A CSR and a certificate by hand, with subjectPublicKey bits csr_key and
 * cert_key: as much of each as public_key_of and cert_parse read. The
 * certificate as PEM.
 */
static void key_pair_by_hand(const char *csr_key, size_t csr_len, const char *cert_key,
			     size_t cert_len, struct buf *csr, struct buf *pem)
{
	static char text[2048];
	struct buf cert = { 0 };
	int k;

	csr->len = 0;
	der_add(csr, 0x02, "", 1);                      /* version */
	der_add(csr, 0x30, "", 0);                      /* subject */
	der_add(csr, 0x30, "", 0);                      /* algorithm */
	der_add(csr, 0x03, csr_key, csr_len);
	der_wrap(csr, csr->len - csr_len - 4, 0x30);    /* SubjectPublicKeyInfo */
	der_wrap(csr, 0, 0x30);
	der_wrap(csr, 0, 0x30);
	der_add(&cert, 0xA0, "\x02\x01\x02", 3);        /* version 3 */
	der_add(&cert, 0x02, "\x01", 1);                /* serial */
	for (k = 0; k < 4; k++) {                       /* signature, issuer, validity, subject */
		size_t start = cert.len;
		if (k == 2) {
			der_add(&cert, 0x17, "260101000000Z", 13);
			der_add(&cert, 0x18, "20990101000000Z", 15);   /* not expired */
		}
		der_wrap(&cert, start, 0x30);
	}
	der_add(&cert, 0x30, "", 0);
	der_add(&cert, 0x03, cert_key, cert_len);
	der_wrap(&cert, cert.len - cert_len - 4, 0x30);
	der_wrap(&cert, 0, 0x30);
	der_wrap(&cert, 0, 0x30);
	pem->len = 0;
	buf_add(pem, text, br_pem_encode(text, cert.p, cert.len, "CERTIFICATE", 0));
	buf_free(&cert);
}

/*
 * cert_parse on certificates made by openssl: serial (with its leading
 * zero), validity, names of every kind, the Authority Key Identifier.
 */
static void test_cert_parse(void)
{
	static struct names ns;
	struct cert c;
	struct buf pem = { 0 }, der = { 0 }, b = { 0 };
	size_t pos = 0;
	char label[32];
	set_context("cert_parse");
	CHECK_INT(sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
		     "-keyout cp-ca.key -out cp-ca.pem -days 2 -subj /CN=cp-ca && "
		     "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout cp.key "
		     "-out cp.csr -subj /CN=cp.example && printf 'subjectAltName=DNS:cp.example,"
		     "DNS:*.Cp.Example,IP:192.0.2.1,email:a@cp.example\\n' > cp.ext && "
		     "openssl x509 -req -in cp.csr -CA cp-ca.pem -CAkey cp-ca.key -set_serial "
		     "0x00a1b2c3 -days 30 -extfile cp.ext -out cp.pem"), 0);
	CHECK(slurp("cp.pem", &pem) == 0);
	CHECK_INT(pem_next(&pem, &pos, label, sizeof label, &der), 1);
	CHECK_INT(cert_parse(der.p, der.len, &c, &ns), 0);
	CHECK_MEM(c.serial.p, c.serial.len, "\x00\xa1\xb2\xc3", 4);       /* DER: positive */
	CHECK_INT(c.not_after - c.not_before, 30 * 86400);
	CHECK(c.not_before <= time(NULL) + 60 && c.not_before >= time(NULL) - 60);
	CHECK_INT(c.aki.len, 20);
	CHECK_INT(ns.n, 3);
	CHECK(our_ident(&ns, "dns", "cp.example") && our_ident(&ns, "dns", "*.cp.example"));
	CHECK(our_ident(&ns, "ip", "192.0.2.1") != NULL);
	/* the AKI is the issuer's subjectKeyIdentifier */
	CHECK_INT(sh("openssl x509 -in cp.pem -noout -ext authorityKeyIdentifier | tr -d ' :\\n' | "
		     "grep -qi \"$(openssl x509 -in cp-ca.pem -noout -ext subjectKeyIdentifier | "
		     "tail -1 | tr -d ' :')\""), 0);
	/* no names wanted; cut short anywhere: refused, never read past the end */
	CHECK_INT(cert_parse(der.p, der.len, &c, NULL), 0);
	for (pos = 0; pos < der.len; pos++) {
		unsigned char *p = exact_copy(der.p, pos);
		CHECK(cert_parse(p, pos, &c, &ns) < 0);
		free(p);
	}
	buf_free(&pem);
	buf_free(&der);
	buf_free(&b);
	context[0] = 0;
}

/*
 * cert_parse, field by field: a hand-made certificate (a P-256 key, a SAN and an AKI) whose TBS
 * fields are each in turn replaced by something malformed, or by something legal that the parser
 * must step over (no version: v1; an issuerUniqueID before the extensions; an AKI without its
 * keyIdentifier). Each check in its chain of || decides one of these.
 */
struct piece {
	const char *p;
	size_t n;
};

/* version, serial, signature, issuer, validity, subject, spki, unique IDs, extensions, trailing */
static const struct piece CP_FIELDS[10] = {
	{ S("\xA0\x03\x02\x01\x02") }, { S("\x02\x01\x01") },
	{ S("\x30\x0a\x06\x08\x2a\x86\x48\xce\x3d\x04\x03\x02") }, { S("\x30\x00") },
	{ S("\x30\x1e\x17\x0d" "260317081343Z" "\x17\x0d" "270317081343Z") }, { S("\x30\x00") },
	{ S("\x30\x0f\x30\x09\x06\x07\x2a\x86\x48\xce\x3d\x02\x01\x03\x02\x00\x04") }, { S("") },
	{ S("\x30\x15\x06\x03\x55\x1d\x11\x04\x0e\x30\x0c\x82\x0a" "cp.example"
	      "\x30\x0d\x06\x03\x55\x1d\x23\x04\x06\x30\x04\x80\x02\xaa\xbb") }, { S("") },
};

/* The certificate of CP_FIELDS with field k (-1: every field) replaced by f, into out. */
static void cert_with(struct buf *out, int k, struct piece f)
{
	size_t i, start;
	out->len = 0;
	for (i = 0; i < 10; i++) {
		struct piece x = k < 0 || (int)i == k ? f : CP_FIELDS[i];
		start = out->len;
		buf_add(out, x.p, x.n);
		if (i == 8 && x.n) {    /* the extensions: SEQUENCE in [3] */
			der_wrap(out, start, 0x30);
			der_wrap(out, start, 0xA3);
		}
	}
	der_wrap(out, 0, 0x30);
	buf_add(out, CP_FIELDS[2].p, CP_FIELDS[2].n);
	der_add(out, 0x03, "\x00\x01", 2);
	der_wrap(out, 0, 0x30);
}

static void test_cert_parse_fields(void)
{
	static const struct {
		const char *what;
		int field;
		struct piece with;
		int want, aki, names;
	} cases[] = {
		{ "as made", 9, { S("") }, 0, 2, 1 },
		{ "no version (v1)", 0, { S("") }, 0, 2, 1 },
		{ "an empty TBS", -1, { S("") }, -1, 0, 0 },
		{ "serial no INTEGER", 1, { S("\x03\x01\x01") }, -1, 0, 0 },
		{ "validity no SEQUENCE", 4,
		  { S("\x31\x1e\x17\x0d" "260317081343Z" "\x17\x0d" "270317081343Z") }, -1, 0, 0 },
		{ "notBefore malformed", 4,
		  { S("\x30\x1e\x17\x0d" "260317081343X" "\x17\x0d" "270317081343Z") }, -1, 0, 0 },
		{ "notAfter malformed", 4,
		  { S("\x30\x1e\x17\x0d" "260317081343Z" "\x17\x0d" "2703170813434") }, -1, 0, 0 },
		{ "spki no SEQUENCE", 6,
		  { S("\x31\x0f\x30\x09\x06\x07\x2a\x86\x48\xce\x3d\x02\x01\x03\x02\x00\x04") }, -1, 0, 0 },
		{ "key no BIT STRING", 6,
		  { S("\x30\x0f\x30\x09\x06\x07\x2a\x86\x48\xce\x3d\x02\x01\x04\x02\x00\x04") }, -1, 0, 0 },
		{ "an issuerUniqueID", 7, { S("\x81\x02\x00\xff") }, 0, 2, 1 },
		{ "a byte after the extensions", 9, { S("\x05") }, -1, 0, 0 },
		{ "AKI no SEQUENCE", 8, { S("\x30\x0d\x06\x03\x55\x1d\x23\x04\x06\x31\x04\x80\x02\xaa\xbb") },
		  -1, 0, 0 },
		{ "AKI keyIdentifier cut short", 8,
		  { S("\x30\x0d\x06\x03\x55\x1d\x23\x04\x06\x30\x04\x80\x05\xaa\xbb") }, -1, 0, 0 },
		{ "AKI without keyIdentifier", 8,
		  { S("\x30\x0d\x06\x03\x55\x1d\x23\x04\x06\x30\x04\xa1\x02\xaa\xbb") }, 0, 0, 0 },
	};
	static struct names ns;
	struct buf der = { 0 };
	struct cert c;
	size_t k;
	for (k = 0; k < sizeof cases / sizeof cases[0]; k++) {
		unsigned char *p;
		cert_with(&der, cases[k].field, cases[k].with);
		p = exact_copy(der.p, der.len);
		set_context("cert_parse: %s", cases[k].what);
		CHECK_INT(cert_parse(p, der.len, &c, &ns), cases[k].want);
		if (!cases[k].want) {
			CHECK_INT(c.aki.len, cases[k].aki);
			CHECK_INT(ns.n, cases[k].names);
			CHECK_INT(c.not_after - c.not_before, 365 * 86400);
			CHECK_INT(c.key.len, 2);
		}
		free(p);
	}
	buf_free(&der);
	context[0] = 0;
}

/*
 * The time certificates are checked at is ours, 64-bit: a chain valid in
 * 2039 passes then and fails before, on every build (the 32-bit ones run
 * this under qemu: their BearSSL's time() would fail after 2038).
 */
static void test_x509_after_2038(void)
{
	static struct tls t;
	struct buf pem = { 0 }, der = { 0 };
	size_t pos;
	char label[32];
	long long when[] = { 2191190400LL, 2139091200LL, 2224526400LL };  /* 2039-06, 2037-10, 2040-06 */
	unsigned want[] = { 0, BR_ERR_X509_EXPIRED, BR_ERR_X509_EXPIRED };
	int k;
	set_context("set_x509_time after 2038");
	CHECK_INT(sh("printf '[ca]\\ndefault_ca=x\\n[x]\\ndatabase=y-index\\nnew_certs_dir=.\\n"
		     "serial=y-serial\\ndefault_md=sha256\\npolicy=p\\nunique_subject=no\\n"
		     "x509_extensions=e\\n[p]\\ncommonName=supplied\\n[e]\\n"
		     "subjectAltName=DNS:y2039.example\\n' > y.cnf && : > y-index && echo 1000 > y-serial && "
		     "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
		     "-keyout y-ca.key -out y-ca.pem -days 36500 -subj /CN=y-ca && "
		     "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout y.key "
		     "-out y.csr -subj /CN=y2039.example && openssl ca -batch -config y.cnf -cert y-ca.pem "
		     "-keyfile y-ca.key -in y.csr -out y.pem -notext -startdate 20390101000000Z "
		     "-enddate 20400101000000Z"), 0);
	xload_trust_anchors(tpath("y-ca.pem"));
	CHECK(slurp("y.pem", &pem) == 0);
	pos = 0;
	CHECK_INT(pem_next(&pem, &pos, label, sizeof label, &der), 1);
	for (k = 0; k < 3; k++) {
		const br_x509_class **x = &t.xc.vtable;
		tls_init(&t);
		set_x509_time(&t.xc, when[k]);
		(*x)->start_chain(x, "y2039.example");
		(*x)->start_cert(x, (uint32_t)der.len);
		(*x)->append(x, (const unsigned char *)der.p, der.len);
		(*x)->end_cert(x);
		check((*x)->end_chain(x) == want[k], __FILE__, __LINE__, "at %lld", when[k]);
	}
	free_trust_anchors();
	buf_free(&pem);
	buf_free(&der);
	context[0] = 0;
}

/* cert_is_ours compares all of the key bits, not a prefix. */
/* The index in TEST_KEYS of a key file. */
static size_t test_key(const char *file)
{
	size_t i;

	for (i = 0; i < N_TEST_KEYS && strcmp(TEST_KEYS[i].file, file); i++)
		;
	return i;
}

/*
 * key_fits_cert (--revoke with --revoke-key): a certificate openssl made for
 * a key fits that key, and no other: another key of the same curve, another
 * curve, RSA; nor does anything that is not a certificate.
 */
static void test_key_fits_cert(void)
{
	static const char *const files[] = { "ec256.pem", "ec256-p8.pem", "ec384.pem", "rsa2048.pem",
					     "rsa2048-p8.pem" };
	enum { N = sizeof files / sizeof files[0] };
	static struct key k[N];
	struct buf der[N] = { { 0 } }, cert[N] = { { 0 } };
	int made[N] = { 0 };
	size_t i, c;

	make_keys();
	for (i = 0; i < N; i++) {
		char name[32];

		set_context("key_fits_cert: %s", files[i]);
		snprintf(name, sizeof name, "fit-%zu.der", i);
		/* k[i] keeps pointing into der[i] (RSA's n and e): each has its own */
		made[i] = CHECK(test_key(files[i]) < N_TEST_KEYS) &&
			  key_of(test_key(files[i]), &k[i], &der[i]) &&
			  CHECK_INT(sh("openssl req -x509 -new -key %s -subj /CN=fit.test -days 1 "
				       "-outform DER -out %s", files[i], name), 0) &&
			  CHECK_INT(slurp(name, &cert[i]), 0);
	}
	for (i = 0; i < N; i++)
		for (c = 0; c < N; c++)
			if (made[i] && made[c]) {
				set_context("key_fits_cert: key %s, certificate for %s", files[i], files[c]);
				CHECK_INT(key_fits_cert(&k[i], &cert[c]), i == c);
			}
	if (made[0]) {
		/* the right key, in a certificate that breaks down after it: no fit */
		struct cert c;
		unsigned char *p;

		set_context("key_fits_cert: extensions that are no SEQUENCE");
		if (CHECK_INT(cert_parse(cert[0].p, cert[0].len, &c, NULL), 0)) {
			p = (unsigned char *)cert[0].p + (c.key.p + c.key.len -
							  (const unsigned char *)cert[0].p);
			if (CHECK_INT(p[0], 0xA3)) {                    /* [3] after the key */
				p += 2 + (p[1] & 0x80 ? p[1] & 0x7f : 0);
				if (CHECK_INT(p[0], 0x30)) {
					p[0] = 0x31;
					CHECK_INT(key_fits_cert(&k[0], &cert[0]), 0);
					p[0] = 0x30;
				}
			}
		}
		set_context("key_fits_cert: not a certificate");
		CHECK_INT(key_fits_cert(&k[0], &der[0]), 0);           /* the key's own DER */
		cert[0].len /= 2;                                       /* a cut certificate */
		CHECK_INT(key_fits_cert(&k[0], &cert[0]), 0);
		cert[0].len = 0;
		CHECK_INT(key_fits_cert(&k[0], &cert[0]), 0);
	}
	for (i = 0; i < N; i++) {
		buf_free(&der[i]);
		buf_free(&cert[i]);
	}
	context[0] = 0;
}

static void test_cert_key_bits(void)
{
	struct buf b = { 0 }, pem = { 0 };

	set_context("cert_is_ours: the key bits, all of them");
	key_pair_by_hand("\x00\x04\x01\x02", 4, "\x00\x04\x01\x02", 4, &b, &pem);
	CHECK(cert_is_ours(&pem, &b, &no_names, -1));
	key_pair_by_hand("\x00\x04\x01\x02", 4, "\x00\x04\x01\x02\x03", 5, &b, &pem);
	CHECK(!cert_is_ours(&pem, &b, &no_names, -1));
	key_pair_by_hand("\x00\x04\x01\x02\x03", 5, "\x00\x04\x01\x02", 4, &b, &pem);
	CHECK(!cert_is_ours(&pem, &b, &no_names, -1));
	buf_free(&b);
	buf_free(&pem);
	context[0] = 0;
}

/*
 * valid_at, cert_is_ours' clock rule: a day's leeway before the start (a CA backdates little
 * or not at all), none at the end, and a time not known (-1: the CA sent no Date) makes
 * nothing valid, not even a certificate that ended in 1970.
 */
static void test_valid_at(void)
{
	struct cert c = { .not_before = 1000000, .not_after = 2000000 };

	set_context("valid_at");
	CHECK_INT(valid_at(&c, 1500000), 1);
	CHECK_INT(valid_at(&c, c.not_before - 86400 + 1), 1);      /* begins within a day */
	CHECK_INT(valid_at(&c, c.not_before - 86400), 0);
	CHECK_INT(valid_at(&c, c.not_after - 1), 1);
	CHECK_INT(valid_at(&c, c.not_after), 0);                    /* ends: valid no more */
	c.not_before = -10 * 365 * 86400LL;                         /* 1960 to 1970 and a day */
	c.not_after = 86400;
	CHECK_INT(valid_at(&c, 0), 1);
	CHECK_INT(valid_at(&c, -1), 0);
	set_context("renewal_time: a third of the lifetime left, half under 10 days");
	run.days = 0;
	c.not_before = 0;
	c.not_after = 90 * 86400;
	CHECK_INT(renewal_time(&c), 60 * 86400);
	c.not_after = 10 * 86400;
	CHECK_INT(renewal_time(&c), 10 * 86400 - 10 * 86400 / 3);
	c.not_after = 10 * 86400 - 1;
	CHECK_INT(renewal_time(&c), c.not_after - c.not_after / 2);
	context[0] = 0;
}
#endif

/* ===================== the groups, and main ===================== */

enum { MAX_GROUP_TESTS = 5 };

struct group {
	const char *name;
	void (*test[MAX_GROUP_TESTS])(void);    /* run in this order; NULL ends the list */
};

/* Bottom up through acme-tiny.c's layers; those that need BearSSL are not in tests/unit-mips. */
static const struct group GROUPS[] = {
	/* 9. bytes, files, time and messages */
	{ "base64", { test_base64, test_b64_decode, test_b64_decode_url } },
	{ "files", { test_read_file, test_write_file, test_our_leftover } },
	{ "dates", { test_retry_after, test_rfc3339, test_der_time } },
	{ "messages", { test_info } },
	/* 8. JSON */
	{ "json", { test_json_valid, test_json_invalid, test_json_small_buffers, test_json_item,
		    test_json_write } },
	/* 7. keys and DER */
	{ "pem", { test_pem, test_pem_bundle } },
	{ "der", { test_der_next } },
#ifndef UNIT_NO_BEARSSL
	{ "keys", { test_keys } },
	{ "jwk", { test_thumbprint_rfc7638, test_jwk } },
#endif
	{ "names", { test_names_from_list, test_name_length, test_add_name } },
#ifndef UNIT_NO_BEARSSL
	{ "csr", { test_csr_handmade, test_csr_ends, test_csr } },
	{ "load", { test_load_files } },
	/* 6. JWS and CSRs */
	{ "jws", { test_jws_keys, test_jws_eab } },
	{ "generate", { test_generated_keys } },
#else
	{ "csr", { test_csr_handmade, test_csr_ends } },
#endif
	/* 5. HTTP */
	{ "http", { test_http_good, test_http_bad, test_http_limits } },
	{ "url", { test_url } },
	/* 4. around the run */
	{ "args", { test_parse_args } },
	{ "hook", { test_run_hook } },
#ifndef UNIT_NO_BEARSSL
	/* 2. ACME steps */
	{ "dns", { test_persist_record, test_persist_records, test_fill_taken, test_take_challenge } },
	{ "chain", { test_check_chain, test_cert_key_bits, test_key_fits_cert, test_valid_at } },
	{ "cert", { test_cert_parse, test_cert_parse_fields, test_x509_after_2038 } },
#endif
};

#define N_GROUPS (sizeof GROUPS / sizeof GROUPS[0])

static void list_groups(FILE *f)
{
	size_t g;

	for (g = 0; g < N_GROUPS; g++)
		fprintf(f, "%s\n", GROUPS[g].name);
}

/* tests/unit [--list | GROUP...]: see the top of this file. */
int main(int argc, char **argv)
{
	time_t start = time(NULL);
	int chosen[N_GROUPS] = { 0 };
	size_t g, t;
	int i;

	for (i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--list")) {
			list_groups(stdout);
			return 0;
		}
	for (i = 1; i < argc; i++) {
		for (g = 0; g < N_GROUPS && strcmp(argv[i], GROUPS[g].name); g++)
			;
		if (g == N_GROUPS) {
			fprintf(stderr, "%s: no group \"%s\"; the groups are:\n", argv[0], argv[i]);
#ifdef UNIT_NO_BEARSSL
			fprintf(stderr, "(built without BearSSL: keys, jwk, load, jws, generate and chain are left out)\n");
#endif
			list_groups(stderr);
			return 2;
		}
		chosen[g] = 1;
	}

	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 2;
	}
	/* what hold_signals holds, as catch_signals fills it, without its handlers */
	sigemptyset(&ending);
	sigaddset(&ending, SIGTERM);
	sigaddset(&ending, SIGALRM);
	for (g = 0; g < N_GROUPS; g++)
		if (argc == 1 || chosen[g])
			for (t = 0; t < MAX_GROUP_TESTS && GROUPS[g].test[t]; t++)
				GROUPS[g].test[t]();

	sh("cd / && rm -rf '%s'", tmpdir);
	if (access(tmpdir, F_OK) == 0)
		printf("note: could not remove %s\n", tmpdir);
	if (time(NULL) - start > 30)
		printf("note: the tests took %ld s\n", (long)(time(NULL) - start));
	printf("%d passed, %d failed\n", n_passed, n_failed);
	return n_failed ? 1 : 0;
}
