/*
 * acme-tiny: an ACME (RFC 8555) client in one C file over BearSSL, a drop-in for acme_tiny.py.
 *
 * Map of this file, top down: the protocol first, then what it stands on.
 *   0. Types, limits, and the interfaces of the layers below
 *   1. main: the run, step by step, as acme_tiny.py's get_crt
 *   2. ACME steps (RFC 8555): directory, account, order, ARI renewal, revoke, rollover, deactivate,
 *      challenges (http-01 files, a hook's dns-01, dns-persist-01), authorizations, finalize, chain
 *   3. ACME requests: signed POSTs, nonces, polling, the CA's problems
 *   4. Around the run: command line, signals, --output, the CSR and keys
 *   5. HTTP/1.1 over TCP or TLS: URLs, trust anchors, connections, requests and responses
 *   6. JWS and CSRs: what we sign
 *   7. Keys and DER: curves, PEM, keys and their JWK, names in CSRs and certificates, new keys
 *   8. JSON: a strict tokenizer, lookups, escaped strings
 *   9. Bytes, files, time and messages: buffers, base64, whole files, dates, and fail()
 *
 * Conventions. A function whose name begins with x (xpost, xread_file) may end the run through
 * fail() instead of returning; fail(), fail_problem() and usage_error() never return. Others
 * return their errors (-1, 0 or NULL, as their comments say), but running out of memory ends the
 * run wherever it happens. Deadlines are times of now_ms(), passed as parameters.
 *
 * Everything from the network is hostile: sizes and loops are bounded, reads have deadlines,
 * parsing is strict; nothing from a server reaches file names, requests or the terminal unchecked.
 */
#define _XOPEN_SOURCE 700       /* POSIX 2008 with XSI: realpath */
#include <bearssl.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

pid_t _Fork(void);      /* POSIX 2024's fork for signal handlers; glibc hides it */

/* ======== 0. Types, limits, and the interfaces of the layers ============================ */

#define VERSION "0.2.0"     /* as openwrt/Makefile's PKG_VERSION */
#define USER_AGENT "acme-tiny/" VERSION
#define DEFAULT_CA "https://acme-v02.api.letsencrypt.org"   /* its directory: + "/directory" */
#define DEFAULT_CA_FILE "/etc/ssl/certs/ca-certificates.crt"

enum {
	MAX_FILE = 1 << 20,       /* a file we read: a key, CSR, certificate or CA bundle */
	MAX_BODY = 128 << 10,     /* one HTTP response body */
	MAX_LINE = 8192,          /* one HTTP status or header line */
	MAX_HEADERS = 100,        /* header lines in one response */
	MAX_URL = 2048,           /* any URL we are given or follow */
	MAX_NAMES = 100,          /* identifiers in one certificate */
	MAX_NAME = 253,           /* one DNS name */
	MAX_TOKENS = 8192,        /* JSON keys and values in one response */
	MAX_DEPTH = 32,           /* JSON nesting */
	MAX_TOKEN = 255,          /* an http-01 token, base64url: a file name (NAME_MAX) */
	MAX_STATUS = 32,          /* an ACME object's "status" */
	MAX_POST_TRIES = 16,      /* sends of one request, for badNonce or a busy CA */
	MAX_FINALIZE_TRIES = 4,   /* finalize sends, in all (a lagging order: orderNotReady) */
	MAX_POLL_DELAY = 8000,    /* ms between polls without Retry-After */
	FIRST_POLL_DELAY = 20     /* ms before the first poll, doubling from there */
};

/* A growing byte buffer, always NUL-terminated. Callers bound its size. */
struct buf {
	char *p;
	size_t len, cap;
};

struct der {
	const unsigned char *p;
	size_t len;
};

/*
 * A strict RFC 8259 tokenizer. Values become tokens in document order; `next` is the index just
 * past a value and everything inside it, so arrays and objects are walked without recursion.
 * Strings must be valid UTF-8 without NUL (escaped or not); nesting and token counts are bounded.
 */
enum { J_OBJ = 1, J_ARR, J_STR, J_NUM, J_TRUE, J_FALSE, J_NULL };

struct jtok {
	int type;
	int start, end;   /* bytes of the value; a string's exclude its quotes */
	int next;
};

struct json {
	const char *s;
	size_t len;
	struct jtok *t;
	int n, cap;
};

/* A private key and what JWS and CSRs need of it. */
struct key {
	br_skey_decoder_context dc;        /* BearSSL's key decoder: it holds the key */
	unsigned char spare[64];  /* BearSSL 0.6 writes up to 24 bytes past dc on a crafted key */
	int type;                          /* BR_KEYTYPE_RSA or BR_KEYTYPE_EC */
	const br_rsa_private_key *rsa;
	const br_ec_private_key *ec;
	const char *alg;                   /* RS256, ES256 or ES384 */
	struct der n, e;                   /* RSA public key, in the caller's DER */
	unsigned char q[BR_EC_KBUF_PUB_MAX_SIZE];   /* EC public point */
	size_t qlen;
	char jwk[1024];                    /* RFC 7638 member order, no spaces */
	char thumbprint[48];               /* base64url SHA-256 of jwk */
};

/* An ACME identifier (RFC 8555 7.1.4; type "ip" from RFC 8738). */
struct ident {
	char type[4];        /* "dns" or "ip" */
	char value[MAX_NAME + 1];
};

struct names {
	int n;
	struct ident id[MAX_NAMES];
};

/* What we read of a certificate (RFC 5280 4.1). */
struct cert {
	struct der serial, key;                 /* key: the subjectPublicKey bits */
	struct der aki;                         /* the Authority Key Identifier's keyIdentifier */
	long long not_before, not_after;        /* seconds since 1970 */
};

/* --key-type names; the first, EC P-256, is the default: quick on a router. */
static const struct key_type {
	const char *name;
	int curve;           /* for EC */
	unsigned bits;       /* for RSA */
} KEY_TYPES[] = {
	{ "p256", BR_EC_secp256r1, 0 }, { "p384", BR_EC_secp384r1, 0 },
	{ "rsa2048", 0, 2048 }, { "rsa3072", 0, 3072 }, { "rsa4096", 0, 4096 }, { NULL, 0, 0 }
};

struct url {
	int https;
	char host[256], port[6], path[MAX_URL];
};

struct tls {
	br_x509_minimal_context xc;     /* first: its methods get a struct tls (ip_engine) */
	br_ssl_client_context sc;
	br_sslio_context io;
	unsigned char iobuf[BR_SSL_BUFSIZE_MONO];   /* half-duplex: HTTP takes turns */
	char ip[INET6_ADDRSTRLEN];      /* a CA addressed by IP: its address, as inet_ntop has it */
	struct buf leaf;                /* ...and its certificate, kept to check that */
	int certs;                      /* certificates of the chain so far */
};

struct conn {
	int fd;                      /* -1 while not connected */
	struct tls *tls;             /* NULL for plain HTTP */
	char host[256], port[6];     /* where fd goes */
	long long deadline;          /* ms: the current exchange ends by then */
	const char *why;             /* why the exchange failed: set by conn_error() */
	size_t got, raw;             /* bytes of the current exchange's answer, and on the wire */
	int (*read)(struct conn *, unsigned char *, size_t);   /* >0, 0 at the end, -1 */
	unsigned char in[4096];
	size_t inpos, inlen;
};

/* A response, with the only headers ACME needs. */
struct resp {
	int status;
	int close;                   /* the connection ends after this response */
	char nonce[256];             /* Replay-Nonce, kept only if base64url */
	char location[MAX_URL], retry_after[64], date[64];      /* date: the server's clock */
	char terms[MAX_URL];         /* Link: <...>;rel="terms-of-service" */
	struct buf body;
};

/* An order (RFC 8555 7.1.3): its URL, and its latest state as the CA sent it. */
struct order {
	char url[MAX_URL], status[MAX_STATUS];
	struct resp r;
	struct json j;
};

struct acme {
	struct conn conn;            /* one kept-alive TLS connection to the CA */
	const struct key *key;       /* what signs: an account key, or a certificate's */
	char new_nonce[MAX_URL], new_account[MAX_URL], new_order[MAX_URL];
	char revoke_cert[MAX_URL], key_change[MAX_URL];
	char nonce[256];             /* the last Replay-Nonce, unused yet */
	char kid[MAX_URL];           /* the account URL, once we know it */
	char renewal_info[MAX_URL];  /* ARI (RFC 9773), if the CA has it */
	char replaces[256];          /* the ARI certID of the certificate we renew, if any */
	char issuer[MAX_NAME + 1];   /* dns-persist-01: meta's issuerDomainNames[0], if any, */
	char caa[MAX_NAME + 1];      /* ...else the challenge's, else caaIdentities[0] */
	char hash_prefix[256];       /* meta's accountHashPrefix: the account by hash (draft-02) */
	long long ca_time;           /* the CA's clock (its Date) at the directory; -1 if none */
};

/* The run, as the command line describes it. */
static struct run {
	const char *account_key, *csr, *acme_dir, *directory, *ca_file;
	const char *domains, *domain_key;     /* instead of csr: we build the CSR */
	const char *output;                   /* instead of stdout */
	const char *profile;                  /* the CA's certificate profile, by name */
	const char *ca;                       /* acme_tiny.py's old --ca: the directory's base */
	const char *revoke, *revoke_key;      /* --revoke CERTFILE, and the key that signs it */
	const char *reason;                   /* its reason code (RFC 5280 5.3.1), as digits */
	const char *new_account_key;          /* key rollover to this key */
	const char *hook;                     /* a program that answers challenges, as uacme's */
	const char *eab_kid, *eab_hmac_key, *eab_alg;   /* External Account Binding */
	const char *key_type_name;            /* for keys we make: */
	const struct key_type *key_type;      /* ...that name's type */
	char **contacts;
	int n_contacts, disable_check, stats, create_account_key, quiet;
	int check_port;   /* for the self-check; 0: the URL names none (80) */
	int days;         /* renew with this many days left; 0: by the lifetime (or ARI) */
	int force;        /* renew whether due or not */
	int deactivate;   /* --deactivate-account */
	int dns_persist;  /* answer dns-persist-01 challenges: the records are set already */
	int print_persist;        /* --print-dns-persist: the records to set, and nothing else */
	int hook_timeout; /* seconds for one run of the hook */
	int timeout;      /* seconds for one HTTP exchange, connect included */
	int max_wait;     /* seconds of each wait on an order; of a request's waits on a busy CA */
	int max_time;     /* seconds for all of the talk with the CA: a cron job must end */
} run = { .directory = DEFAULT_CA "/directory", .ca_file = DEFAULT_CA_FILE,
	  .key_type_name = "p256", .eab_alg = "HS256", .hook_timeout = 300, .timeout = 30,
	  .max_wait = 300, .max_time = 3600 };

/* The signals on which on_signal ends the run (challenges undone, one line): catch_signals' */
static sigset_t ending;

/* What SIGALRM, the end of --max-time, says; made before the alarm is set (or inherited). */
static char time_up[64] = "acme-tiny: interrupted";

/* The PEM labels of private keys, CSRs and certificates */
static const char *const KEY_LABELS[] = {
	"PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", NULL
};
static const char *const CSR_LABELS[] = { "CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST", NULL };
static const char *const CERT_LABELS[] = { "CERTIFICATE", NULL };

/* What --stats prints at the end: the cost of a run, for benchmarks. */
static struct {
	int requests, connections;
} stats;

/* What the code above uses of the code below; each definition says what it returns. */

/* 1-2: the steps of an issuance */
static int xissue(struct acme *a, const struct names *ns, const struct buf *csr,
		  const struct buf *old, struct buf *chain);
static void xdirectory(struct acme *a);
static void xcheck_profile(const struct json *j, int meta, const char *profile);
static void first_str(const struct json *j, int list, char *out, size_t cap);
static void xaccount(struct acme *a);
static void xnew_order(struct acme *a, const struct names *ns, struct order *o);
static int xdue(struct acme *a, const struct buf *old, const struct names *ns,
		const struct buf *csr);
static void xmanage(struct acme *a);
static void xauthorize(struct acme *a, struct order *o, const struct names *ns);
static void xfinalize(struct acme *a, struct order *o, const struct buf *csr);
static void xcertificate(struct acme *a, struct order *o, const struct buf *csr,
			 const struct names *ns, struct buf *chain);
static void xcheck_challenge_ways(void);
static void xpersist_records(const struct acme *a, const struct names *ns, struct buf *out);

/* 3: ACME requests */
static int xsend(struct acme *a, const char *url, const char *payload, struct resp *r,
		 const char *step, long long give_up);
static void xpost(struct acme *a, const char *url, const char *payload, struct resp *r,
		  const char *step);
static void xget(struct acme *a, const char *method, const char *url, struct resp *r,
		 const char *step, long long give_up);
static void xorder_state(struct order *o, const char *step);
static void xpoll(struct acme *a, struct order *o, long long delay);
static const char *problem_text(const struct json *j, int p, char *out, size_t cap);
static __attribute__((noreturn)) void fail_problem(const char *step, const struct resp *r);
static __attribute__((noreturn)) void xfail_order(struct order *o);
static int is_problem(const struct resp *r, const char *kind);
static void xneed_ca_host(const char *url, const char *step);
static void xparse_object(const struct resp *r, struct json *j, const char *step);
static void xneed_location(const struct resp *r, char *out, const char *step);
static void xneed_str(const struct json *j, int obj, const char *key, char *out, size_t cap,
		      const char *step);

/* 4: around the run */
static void xparse_args(int argc, char **argv);
static void catch_signals(void);
static void hold_signals(int hold);
static int guard_std_fds(void);
static const char *xcheck_output(const char *path, struct buf *old);
static void xcreate_key_if_missing(const char *path, const char *what);
static void xnames_and_csr(struct names *ns, struct buf *csr);
static void print_stats(void);

/* 5: HTTP/1.1 over TCP or TLS */
static int url_parse(const char *s, struct url *u);
static void xload_trust_anchors(const char *path);
static void free_trust_anchors(void);
static void conn_close(struct conn *c);
static const char *http_try(struct conn *c, const char *method, const char *url,
			    const struct buf *body, struct resp *r, long long give_up);
static void xhttp(struct conn *c, const char *method, const char *url, const struct buf *body,
		  struct resp *r, const char *step, long long give_up);

/* 6: JWS and CSRs */
static void xjws_build(struct buf *out, const struct key *k, const char *kid, const char *nonce,
		       const char *url, const char *payload, const struct buf *mac);
static void xcsr_build(struct buf *b, const struct names *ns, const struct key *k);
static void der_spki(struct buf *b, const struct key *k);

/* 7: keys and DER */
static const br_ec_impl ec_nist;       /* P-256, P-384, P-521 */
static int pem_next(const struct buf *in, size_t *pos, char *label, size_t cap, struct buf *der);
static void xload_der(const char *path, const char *what, const char *const *labels,
		      struct buf *der);
static void xload_key(const char *path, const char *what, struct key *k, struct buf *der);
static const struct ident *our_ident(const struct names *ns, const char *type, const char *value);
static int names_from_list(const char *list, struct names *ns);
static int csr_names(const unsigned char *p, size_t len, struct names *ns);
static int csr_key(const void *der, size_t len, struct der *key);
static int cert_parse(const void *der, size_t len, struct cert *c, struct names *ns);
static int der_next(struct der *in, struct der *val);
static int der_expect(struct der *in, int tag, struct der *val);
static int der_is(const struct der *v, const void *bytes, size_t n);
static void xgenerate_key(const char *path, const struct key_type *t);

/* 8: JSON */
static int json_parse(struct json *j, const char *s, size_t len);
static void json_free(struct json *j);
static int json_get(const struct json *j, int obj, const char *key);
static int json_item(const struct json *j, int list, int k);
static int json_str(const struct json *j, int t, char *out, size_t cap);
static const char *json_get_str(const struct json *j, int obj, const char *key,
				char *out, size_t cap);
static void buf_json_str(struct buf *b, const char *before, const char *s);

/* 9: bytes, files, time and messages */
static void buf_add(struct buf *b, const void *data, size_t n);
static void buf_append(void *b, const void *data, size_t n);
static void buf_str(struct buf *b, const char *s);
static __attribute__((sentinel)) void buf_cat(struct buf *b, ...);
static void buf_free(struct buf *b);
static void buf_b64url(struct buf *b, const void *data, size_t n);
static int b64_decode(const char *s, size_t n, struct buf *out);
static int b64_decode_url(const char *s, struct buf *out);
static int is_b64url(const char *s, size_t max);
static int hex_digit(int c);
static void sha256(const void *p, size_t n, unsigned char out[32]);
static int copy_str(char *out, size_t cap, const char *s, size_t len);
static size_t line_breaks(const char *s);
static void lower_case(char *s);
static const char *date_text(long long t, char *out, size_t cap);
static void xread_file(const char *path, const char *what, struct buf *b);
static int write_all(int fd, const void *data, size_t len);
static void xrefuse_dangling(const char *path, const char *what);
static int xcreate_temp(const char *path, char *tmp, size_t cap);
static void xwrite_file(const char *path, const void *data, size_t len, int replace);
static long long number(const char *s, int n);
static long long civil_time(long long y, long long mo, long long d, long long h, long long mi,
			    long long s);
static long long retry_after_ms(const char *v, const char *date);
static long long parse_date(const char *s);
static long long now_ms(void);
static void sleep_ms(long long ms);
static __attribute__((noreturn, format(printf, 1, 2))) void fail(const char *fmt, ...);
static __attribute__((format(printf, 1, 2))) void info(const char *fmt, ...);

/* ======== 1. main: the run, step by step ================================================ */

#ifdef ACME_TINY_TEST
#define main acme_tiny_main     /* tests and fuzzers bring their own main */
int acme_tiny_main(int argc, char **argv);
#endif

/* Does what the command line asks: exit 0 if done, 1 if no certificate was due, 2 on failure. */
int main(int argc, char **argv)
{
	static struct tls tls;
	static struct acme a;   /* zeroed in .bss: an initializer would put its 20 kB in the file */
	static struct names ns;
	static struct key account;
	struct buf key = { 0 }, csr = { 0 }, old = { 0 }, chain = { 0 };
	int stdout_closed = guard_std_fds(), done = 1, manage;
	xparse_args(argc, argv);
	manage = run.revoke || run.new_account_key || run.deactivate;
	if (stdout_closed && !run.output && !manage)
		fail("stdout is closed: nowhere to write the certificate");
	catch_signals();
	xload_trust_anchors(run.ca_file);
	if (run.account_key)
		xrefuse_dangling(run.account_key, "account key");
	if (run.account_key && (!run.create_account_key || run.new_account_key) &&
	    access(run.account_key, F_OK) && errno == ENOENT)
		fail("account key %s: no such file (--create-account-key makes one)",
		     run.account_key);
	if (run.create_account_key)     /* the new key of a rollover, never the old one */
		xcreate_key_if_missing(run.new_account_key ? run.new_account_key : run.account_key,
				       "account key");
	if (run.account_key) {
		info("Parsing account key...");
		xload_key(run.account_key, "account key", &account, &key);
		a.key = &account;
	}
	if (!manage) {
		xnames_and_csr(&ns, &csr);
		xcheck_challenge_ways();        /* tried, as --output is, before the CA is asked */
		if (run.output)
			run.output = xcheck_output(run.output, &old);
	}
	a.conn.fd = -1;
	a.conn.tls = &tls;
	/* however slowly a CA answers and however often it asks to wait */
	snprintf(time_up, sizeof time_up, "acme-tiny: gave up after --max-time %d s", run.max_time);
	alarm((unsigned)run.max_time);
	if (manage)
		xmanage(&a);
	else
		done = xissue(&a, &ns, &csr, &old, &chain);
	hold_signals(1);        /* the CA's part is done: a signal now cannot make the run fail */
	alarm(0);
	conn_close(&a.conn);    /* the write gets the descriptors xcheck_output tried it with */
	if (done && !manage && run.output)
		xwrite_file(run.output, chain.p, chain.len, 1);
	else if (done && !manage &&
		 (fwrite(chain.p, 1, chain.len, stdout) != chain.len || fflush(stdout)))
		fail("cannot write the certificate to stdout: %s", strerror(errno));
	if (run.stats)
		print_stats();
	buf_free(&key);
	buf_free(&csr);
	buf_free(&old);
	buf_free(&chain);
	free_trust_anchors();
	return done ? 0 : 1;
}

/*
 * The issuance, step by step as acme_tiny.py's get_crt: 1 with the PEM chain (or
 * --print-dns-persist's records) in chain, or 0 when the certificate in --output (old) is not due.
 */
static int xissue(struct acme *a, const struct names *ns, const struct buf *csr,
		  const struct buf *old, struct buf *chain)
{
	struct order o = { 0 };
	xdirectory(a);                  /* the CA's URLs; is --profile offered? */
	if (!run.print_persist && !xdue(a, old, ns, csr))       /* renew --output's now? */
		return 0;
	xaccount(a);                    /* newAccount: our account URL, the kid */
	if (run.print_persist) {        /* the dns-persist-01 records, instead of a chain */
		xpersist_records(a, ns, chain);
		return 1;
	}
	xnew_order(a, ns, &o);          /* newOrder: our names; it may be reused */
	if (!strcmp(o.status, "pending"))
		xauthorize(a, &o, ns);  /* each name proven by a challenge, side by side */
	xfinalize(a, &o, csr);          /* the CSR in, until the order is valid */
	xcertificate(a, &o, csr, ns, chain);    /* the chain out, checked */
	json_free(&o.j);
	buf_free(&o.r.body);
	return 1;
}

/* ======== 2. ACME steps (RFC 8555) ====================================================== */

/* GET the directory (7.1.1): the CA's URLs and what its meta says; a nonce, if it sends one. */
static void xdirectory(struct acme *a)
{
	struct resp r = { 0 };
	struct json j = { 0 };
	int meta;
	info("Getting directory...");
	xget(a, "GET", run.directory, &r, "directory", 0);
	if (r.status != 200)
		fail_problem("directory", &r);
	xparse_object(&r, &j, "directory");
	meta = json_get(&j, 0, "meta");
	xneed_str(&j, 0, "newNonce", a->new_nonce, sizeof a->new_nonce, "directory");
	xneed_str(&j, 0, "newAccount", a->new_account, sizeof a->new_account, "directory");
	xneed_str(&j, 0, "newOrder", a->new_order, sizeof a->new_order, "directory");
	if (run.profile)
		xcheck_profile(&j, meta, run.profile);
	json_get_str(&j, 0, "renewalInfo", a->renewal_info, sizeof a->renewal_info);
	json_get_str(&j, 0, "revokeCert", a->revoke_cert, sizeof a->revoke_cert);
	json_get_str(&j, 0, "keyChange", a->key_change, sizeof a->key_change);
	first_str(&j, json_get(&j, meta, "issuerDomainNames"), a->issuer, sizeof a->issuer);
	first_str(&j, json_get(&j, meta, "caaIdentities"), a->caa, sizeof a->caa);
	json_get_str(&j, meta, "accountHashPrefix", a->hash_prefix, sizeof a->hash_prefix);
	strcpy(a->nonce, r.nonce);
	a->ca_time = parse_date(r.date);        /* for certificates, when our clock is wrong */
	json_free(&j);
	buf_free(&r.body);
	info("Directory found!");
}

/* Appends before, then the "contact" member: the --contact list. */
static void add_contacts(struct buf *b, const char *before)
{
	int k;
	buf_cat(b, before, "\"contact\":[", NULL);
	for (k = 0; k < run.n_contacts; k++)
		buf_json_str(b, k ? "," : "", run.contacts[k]);
	buf_str(b, "]");
}

/*
 * Appends External Account Binding (7.3.4) for newAccount: our JWK in a
 * JWS under --eab-kid, MACed with --eab-hmac-key (base64url, as CAs give it).
 */
static void xadd_eab(struct buf *b, const struct acme *a)
{
	struct buf mac = { 0 }, jws = { 0 };
	if (b64_decode_url(run.eab_hmac_key, &mac) || !mac.len)
		fail("--eab-hmac-key: not base64url (A-Z a-z 0-9 - _, without = padding)");
	xjws_build(&jws, a->key, run.eab_kid, NULL, a->new_account, a->key->jwk, &mac);
	buf_cat(b, ",\"externalAccountBinding\":", jws.p, NULL);
	buf_free(&mac);
	buf_free(&jws);
}

/*
 * Our key's account by onlyReturnExisting (7.3.1), which never makes one: 1 with its URL as
 * our kid, 0 if there is none (if must, the run ends then). A CA that wants EAB before all else
 * may say externalAccountRequired for none.
 */
static int xfind_account(struct acme *a, int must)
{
	struct resp r = { 0 };
	int found = xsend(a, a->new_account, "{\"onlyReturnExisting\":true}", &r, "newAccount", 0);
	if (found)
		xneed_location(&r, a->kid, "newAccount");
	else if (!is_problem(&r, "accountDoesNotExist") &&
		 !is_problem(&r, "externalAccountRequired"))
		fail_problem("newAccount", &r);
	else if (must)
		fail("account key %s: the CA has no account for it", run.account_key);
	buf_free(&r.body);
	return found;
}

/*
 * newAccount (7.3) finds or creates the account; its URL becomes our kid. With EAB, the account is
 * looked for first (7.3.1): EAB keys are single-use and expire (Google's in 7 days), so only a new
 * account is sent one, and a cron job that keeps the flags keeps renewing.
 */
static void xaccount(struct acme *a)
{
	struct buf p = { 0 };
	struct resp r = { 0 };
	info("Registering account...");
	if (!run.eab_kid || !xfind_account(a, 0)) {     /* with EAB, one we have is found first */
		buf_str(&p, "{\"termsOfServiceAgreed\":true");
		if (run.n_contacts)
			add_contacts(&p, ",");
		if (run.eab_kid)
			xadd_eab(&p, a);
		buf_str(&p, "}");
		if (!xsend(a, a->new_account, p.p, &r, "newAccount", 0)) {
			if (is_problem(&r, "externalAccountRequired") && !run.eab_kid)
				fail("newAccount: the CA requires External Account Binding:"
				     " --eab-kid and --eab-hmac-key, as the CA gives them");
			fail_problem("newAccount", &r);
		}
		xneed_location(&r, a->kid, "newAccount");
	}
	info("%s! Account ID: %s", r.status == 201 ? "Registered" : "Already registered", a->kid);
	if (run.n_contacts && r.status != 201) {
		p.len = 0;
		add_contacts(&p, "{");
		buf_str(&p, "}");
		xpost(a, a->kid, p.p, &r, "account update");
		info("Updated contact details");
	}
	buf_free(&p);
	buf_free(&r.body);
}

/*
 * newOrder (7.4) for our names into o, replacing the old certificate if any (RFC 9773 5), and
 * without that if the CA refuses it (an error but a rate limit's or a busy CA's): CAs word the
 * refusal each their own way, or fail on it (Pebble 2.6: a 500 for serials above 0x7F...). It
 * may hand back an order it has: ready, processing or valid.
 */
static void xnew_order(struct acme *a, const struct names *ns, struct order *o)
{
	struct buf p = { 0 };
	size_t ids;                     /* the payload's length up to "replaces" */
	int k;
	info("Creating new order...");
	for (k = 0; k < ns->n; k++) {
		buf_json_str(&p, k ? ",{\"type\":" : "{\"identifiers\":[{\"type\":",
			     ns->id[k].type);
		buf_json_str(&p, ",\"value\":", ns->id[k].value);
		buf_str(&p, "}");
	}
	buf_str(&p, "]");
	if (run.profile)
		buf_json_str(&p, ",\"profile\":", run.profile);
	ids = p.len;
	for (;;) {
		p.len = ids;
		if (a->replaces[0])
			buf_json_str(&p, ",\"replaces\":", a->replaces);
		buf_str(&p, "}");
		if (xsend(a, a->new_order, p.p, &o->r, "newOrder", 0))
			break;
		if (!a->replaces[0] || o->r.status < 400 || o->r.status == 429 ||
		    o->r.status == 503 || is_problem(&o->r, "rateLimited"))
			fail_problem("newOrder", &o->r);
		info("The CA refuses this order (HTTP %d): ordering once more without \"replaces\"",
		     o->r.status);
		a->replaces[0] = 0;
	}
	xneed_location(&o->r, o->url, "newOrder");
	xorder_state(o, "newOrder");
	if (!strcmp(o->status, "invalid"))
		xfail_order(o);
	buf_free(&p);
	info("Order created (%s)", o->status);
}

/*
 * Returns if the directory's meta.profiles lists --profile (draft-ietf-acme-profiles), else ends
 * the run: a CA that knows no profiles ignores the field, and would issue something else.
 */
static void xcheck_profile(const struct json *j, int meta, const char *profile)
{
	int list = json_get(j, meta, "profiles"), k;
	struct buf offered = { 0 };
	char name[64];
	if (json_get(j, list, profile) >= 0)
		return;
	for (k = list + 1; list >= 0 && j->t[list].type == J_OBJ && k < j->t[list].next;
	     k = j->t[k + 1].next)
		if (!json_str(j, k, name, sizeof name))
			buf_cat(&offered, offered.len ? ", " : "only ", name, NULL);
	fail("--profile %s: the CA offers %s", profile, offered.len ? offered.p : "no profiles");
}

/* The first item of the JSON array list (index, or -1) into out if a string; else "". */
static void first_str(const struct json *j, int list, char *out, size_t cap)
{
	json_str(j, json_item(j, list, -1), out, cap);  /* which empties out if it fails */
}

/* The ARI certID of c (RFC 9773 4.1) into out: its AKI keyIdentifier, ".", its serial. */
static void cert_id(const struct cert *c, char *out, size_t cap)
{
	struct buf b = { 0 };
	buf_b64url(&b, c->aki.p, c->aki.len);
	buf_str(&b, ".");
	buf_b64url(&b, c->serial.p, c->serial.len);     /* with a leading 0 that DER has */
	if (copy_str(out, cap, b.p, b.len))
		out[0] = 0;
	buf_free(&b);
}

/*
 * The point of the CA's renewalInfo j (RFC 9773 4.2) at which to renew der: fixed in its
 * suggestedWindow by der's hash, so a daily job renews on one day and a fleet spreads out;
 * -1 if j has no usable window.
 */
static long long ari_point(const struct json *j, const struct buf *der)
{
	char start[64], end[64];
	unsigned char h[32];
	long long from, to;
	int w = json_get(j, 0, "suggestedWindow");
	if (!json_get_str(j, w, "start", start, sizeof start) ||
	    !json_get_str(j, w, "end", end, sizeof end) || (from = parse_date(start)) < 0 ||
	    (to = parse_date(end)) <= from)
		return -1;      /* 4.2: an end not after the start makes the answer invalid */
	sha256(der->p, der->len, h);
	return from + (to - from) * (h[0] << 8 | h[1]) / 65536;
}

/*
 * When ARI (RFC 9773) says to renew der (ID a->replaces): its ari_point; -1, after saying so, if
 * unusable or not before not_after (a window past the end would let the certificate expire).
 * No answer at all (a timeout, a broken one) is unusable too: ARI must not stop a renewal.
 */
static long long xari_time(struct acme *a, const struct buf *der, long long not_after)
{
	struct resp r = { 0 };
	struct json j = { 0 };
	char url[MAX_URL + 256], why[MAX_URL];
	long long at = -1;
	const char *err;
	snprintf(url, sizeof url, "%s/%s", a->renewal_info, a->replaces);
	xneed_ca_host(url, "renewalInfo");
	if (!(err = http_try(&a->conn, "GET", url, NULL, &r, 0)) && r.status == 200 &&
	    !json_parse(&j, r.body.p, r.body.len) && (at = ari_point(&j, der)) >= 0 &&
	    json_get_str(&j, 0, "explanationURL", why, sizeof why))
		info("The CA explains its renewal window at %s", why);
	if (at >= not_after)
		info("The CA's renewal window puts renewal after the certificate's end: going by"
		     " the certificate's lifetime");
	else if (at < 0 && err)
		info("The CA's renewal information did not come (%s): going by the certificate's"
		     " lifetime", err);
	else if (at < 0)
		info("The CA's renewal information is unusable (HTTP %d): going by the"
		     " certificate's lifetime", r.status);
	json_free(&j);
	buf_free(&r.body);
	return at < not_after ? at : -1;
}

/* When to renew c by its lifetime: a third left (half, under 10 days), or --days N left. */
static long long renewal_time(const struct cert *c)
{
	long long life = c->not_after - c->not_before;
	long long left = life < 10 * 86400 ? life / 2 : life / 3;
	if (run.days && run.days * 86400LL >= life)
		info("--days %d is the certificate's whole lifetime or more: going by the"
		     " lifetime rule", run.days);
	else if (run.days)
		left = run.days * 86400LL;
	return c->not_after - left;
}

/* 1 if c is valid at t, seconds since 1970 (-1: unknown), with a day's leeway before it begins. */
static int valid_at(const struct cert *c, long long t)
{
	return t >= 0 && c->not_before < t + 86400 && t < c->not_after;
}

/*
 * 1 if pem's first certificate is ours: for the CSR's key (by the subjectPublicKey bits, the one
 * way the two match) and exactly the names ns (another breaks the server that loads it), not
 * ending before it begins, and valid now by our clock or by the CA's, ca_time (a router's clock
 * may be days off; a certificate from next year would block renewal till then); else 0. The one
 * test for the certificate in --output and for the one the CA sends.
 */
static int cert_is_ours(const struct buf *pem, const struct buf *csr, const struct names *ns,
			long long ca_time)
{
	static struct names have;
	struct buf der = { 0 };
	struct der key;
	struct cert c;
	size_t pos = 0;
	char label[32];
	int k, ok = pem_next(pem, &pos, label, sizeof label, &der) == 1 &&
		!strcmp(label, "CERTIFICATE") && !csr_key(csr->p, csr->len, &key) &&
		!cert_parse(der.p, der.len, &c, &have) && der_is(&c.key, key.p, key.len) &&
		have.n == ns->n && c.not_before < c.not_after &&
		(valid_at(&c, time(NULL)) || valid_at(&c, ca_time));
	for (k = 0; ok && k < ns->n; k++)
		ok = our_ident(&have, ns->id[k].type, ns->id[k].value) != NULL;
	buf_free(&der);
	return ok;
}

/*
 * 1 if the certificate in --output (old) is due, or is no unexpired one for these names and key;
 * else 0, having said until when it is good. Its ARI certID goes to a->replaces if replaceable.
 * Due by ARI, else by the lifetime; with --days, also when N days are left, whatever ARI says;
 * due by our clock or by the CA's (a router's may lag: an expired certificate would stay).
 */
static int xdue(struct acme *a, const struct buf *old, const struct names *ns,
		const struct buf *csr)
{
	static struct names have;
	struct buf der = { 0 };
	struct cert c;
	size_t pos = 0;
	char label[32], until[64], due[64];
	long long at = -1, now = a->ca_time > time(NULL) ? a->ca_time : time(NULL);
	int k, shared = 0, ours = old->len && pem_next(old, &pos, label, sizeof label, &der) == 1 &&
		!strcmp(label, "CERTIFICATE") && !cert_parse(der.p, der.len, &c, &have);
	for (k = 0; ours && k < ns->n; k++)
		shared += our_ident(&have, ns->id[k].type, ns->id[k].value) != NULL;
	if (shared && c.aki.len && a->renewal_info[0])
		cert_id(&c, a->replaces, sizeof a->replaces);
	ours = ours && cert_is_ours(old, csr, ns, a->ca_time);
	if (old->len && !ours)
		info("%s begins with no certificate valid now for these names and this key:"
		     " renewing now", run.output);
	if (ours && !run.force && a->replaces[0])
		at = xari_time(a, &der, c.not_after);
	if (ours && !run.force && (at < 0 || run.days)) {
		long long by_life = renewal_time(&c);
		at = at < 0 || by_life < at ? by_life : at;
	}
	buf_free(&der);
	if (at < 0 || now >= at)
		return 1;
	info("%s is good until %s; it is due for renewal from %s", run.output,
	     date_text(c.not_after, until, sizeof until), date_text(at, due, sizeof due));
	return 0;
}

/*
 * Key rollover (7.3.5): a->key's account moves to nk. The inner JWS is signed by nk, with its jwk
 * and no nonce; the outer by the old key. A rerun after a lost answer finds the account under nk.
 */
static void xrollover(struct acme *a, const struct key *nk)
{
	struct buf inner = { 0 }, p = { 0 };
	struct resp r = { 0 };
	if (!xfind_account(a, 0)) {
		a->key = nk;
		xfind_account(a, 1);
		info("The rollover is done: account %s belongs to %s", a->kid, run.new_account_key);
		return;
	}
	buf_json_str(&p, "{\"account\":", a->kid);
	buf_cat(&p, ",\"oldKey\":", a->key->jwk, "}", NULL);
	xjws_build(&inner, nk, NULL, NULL, a->key_change, p.p, NULL);
	xpost(a, a->key_change, inner.p, &r, "keyChange");
	info("Account %s now belongs to %s: use that as --account-key from now on", a->kid,
	     run.new_account_key);
	buf_free(&inner);
	buf_free(&p);
	buf_free(&r.body);
}

/* 1 if the certificate der is for key k (--revoke, --revoke-key), else 0. */
static int key_fits_cert(const struct key *k, const struct buf *der)
{
	struct buf spki = { 0 };
	struct der in, seq, v;
	struct cert c;
	int ok;
	der_spki(&spki, k);
	in = (struct der){ (const unsigned char *)spki.p, spki.len };
	ok = !der_expect(&in, 0x30, &seq) && der_next(&seq, &v) >= 0 &&
	     !der_expect(&seq, 0x03, &v) && !cert_parse(der->p, der->len, &c, NULL) &&
	     der_is(&c.key, v.p, v.len);
	buf_free(&spki);
	return ok;
}

/* Revokes (7.6), rolls the account key over (7.3.5) or deactivates the account (7.3.6). */
static void xmanage(struct acme *a)
{
	static struct key other;        /* the certificate's key, or the new account key */
	struct buf der = { 0 }, cert = { 0 }, p = { 0 };
	struct resp r = { 0 };
	char reason[32] = "";
	xdirectory(a);
	if ((run.revoke && !a->revoke_cert[0]) || (run.new_account_key && !a->key_change[0]))
		fail("directory: the CA has no %s", run.revoke ? "revokeCert" : "keyChange");
	if (run.revoke) {
		xload_der(run.revoke, "--revoke", CERT_LABELS, &cert);
		if (run.revoke_key) {   /* signed by the certificate's own key, as a jwk */
			xload_key(run.revoke_key, "--revoke-key", &other, &der);
			if (!key_fits_cert(&other, &cert))
				fail("--revoke %s is no certificate for the key in --revoke-key %s",
				     run.revoke, run.revoke_key);
			a->key = &other;
		} else {
			xfind_account(a, 1);
		}
		buf_str(&p, "{\"certificate\":\"");
		buf_b64url(&p, cert.p, cert.len);
		if (run.reason)         /* as a JSON number: "04" is none */
			snprintf(reason, sizeof reason, ",\"reason\":%d", atoi(run.reason));
		buf_cat(&p, "\"", reason, "}", NULL);
		xpost(a, a->revoke_cert, p.p, &r, "revokeCert");
		info("Certificate revoked");
	} else if (run.new_account_key) {
		xload_key(run.new_account_key, "new account key", &other, &der);
		xrollover(a, &other);
	} else {
		xfind_account(a, 1);
		xpost(a, a->kid, "{\"status\":\"deactivated\"}", &r, "account deactivation");
		info("Account %s deactivated: this cannot be undone", a->kid);
	}
	buf_free(&der);
	buf_free(&cert);
	buf_free(&p);
	buf_free(&r.body);
}

/*
 * A challenge we took on: a file of ours in --acme-dir, or one the hook accepted. Every way out
 * undoes them, the signal handler's too: so a fixed array and a count, which grows with signals
 * held off between taking one on and noting it.
 */
struct taken {
	int file;                        /* 1: a file in --acme-dir (acme_fd); 0: the hook's */
	char type[8], ident[MAX_NAME + 1], token[MAX_TOKEN + 1], auth[MAX_TOKEN + 64];
};
static int acme_fd = -1;
static struct taken taken[MAX_NAMES];
static volatile sig_atomic_t n_taken;
static volatile pid_t hook_pid;         /* the hook that runs now: on_signal kills it */

/*
 * Runs the hook as uacme does: PROGRAM what TYPE IDENT TOKEN AUTH, by execv, never a shell, with
 * stdin /dev/null, its output to our stderr (stdout is the certificate's), in a process group of
 * its own. Its exit status; -1 if killed, group and all, at deadline (and not waited for past a
 * second more) or if that had passed; -2 if it could not start (errno). Async-signal-safe.
 */
static int run_hook(const char *what, const struct taken *t, long long deadline)
{
	char *argv[] = { (char *)run.hook, (char *)what, (char *)t->type, (char *)t->ident,
			 (char *)t->token, (char *)t->auth, NULL };
	struct sigaction dfl = { .sa_handler = SIG_DFL };
	sigset_t set, old;
	int status = -1, fd, k, killed = 0, err;
	pid_t pid;
	if (now_ms() >= deadline)
		return -1;      /* on_signal's time is up: none is started to be killed */
	sigfillset(&set);       /* none until on_signal knows the hook (hook_pid) */
	sigprocmask(SIG_SETMASK, &set, &old);
	if ((pid = _Fork()) == 0) {     /* fork(3) runs atfork handlers: not in on_signal */
		for (k = 1; k <= SIGRTMAX; k++)         /* our handlers, not the hook's */
			if (sigismember(&ending, k) == 1)
				sigaction(k, &dfl, NULL);
		sigaction(SIGPIPE, &dfl, NULL);
		sigaction(SIGXFSZ, &dfl, NULL);
		setpgid(0, 0);
		sigemptyset(&set);
		sigprocmask(SIG_SETMASK, &set, NULL);
		if ((fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0 && dup2(fd, 0) == 0 &&
		    dup2(2, 1) == 1)
			execv(run.hook, argv);
		_exit(127);
	}
	err = errno;            /* _Fork's, if it failed */
	if (pid > 0) {
		setpgid(pid, pid);      /* as the child does: either way kill(-pid) works */
		hook_pid = pid;
	}
	sigprocmask(SIG_SETMASK, &old, NULL);
	if (pid < 0) {
		errno = err;
		return -2;
	}
	while (waitpid(pid, &status, WNOHANG) == 0) {
		if (now_ms() >= deadline) {
			if (killed++)
				break;  /* SIGKILL a second ago: stuck in the kernel */
			kill(-pid, SIGKILL);
			deadline = now_ms() + 1000;
		}
		poll(NULL, 0, 10);
	}
	hook_pid = 0;
	return !killed && status >= 0 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/*
 * Undoes the challenges taken on, the last first: our files removed, the hook's told what (done
 * or failed), all by deadline (0: each hook run gets --hook-timeout). The number of hook runs
 * that did not exit 0. Async-signal-safe.
 */
static int undo_challenges(const char *what, long long deadline)
{
	int bad = 0;
	while (n_taken > 0) {
		/* it counts until it is undone: a signal meanwhile has it undone again */
		const struct taken *t = &taken[n_taken - 1];
		if (t->file)
			unlinkat(acme_fd, t->token, 0);
		else
			bad += run_hook(what, t, deadline ? deadline :
					now_ms() + run.hook_timeout * 1000LL) != 0;
		n_taken--;
	}
	return bad;
}

/* Opens --acme-dir (a directory we may write in: w and x), checks --hook may run; else fails. */
static void xcheck_challenge_ways(void)
{
	struct stat st;
	if (run.acme_dir &&
	    ((acme_fd = open(run.acme_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 ||
	     access(run.acme_dir, W_OK | X_OK)))
		fail("--acme-dir %s: %s", run.acme_dir, strerror(errno));
	if (run.hook && (access(run.hook, X_OK) || stat(run.hook, &st)))
		fail("--hook %s: %s", run.hook, strerror(errno));
	if (run.hook && !S_ISREG(st.st_mode))   /* a directory is X_OK, but no program */
		fail("--hook %s: not a regular file", run.hook);
}

/* 1 if token names a plain file holding exactly keyauth: ours, left by a run that was killed. */
static int our_leftover(const char *token, const char *keyauth)
{
	char buf[MAX_TOKEN + 64];
	struct stat st;
	ssize_t n = -1;
	int fd = openat(acme_fd, token, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd >= 0 && !fstat(fd, &st) && S_ISREG(st.st_mode) && st.st_nlink == 1)
		n = read(fd, buf, sizeof buf);
	if (fd >= 0)
		close(fd);
	return n == (ssize_t)strlen(keyauth) && !memcmp(buf, keyauth, (size_t)n);
}

/*
 * Takes on t: with t->file, writes the key authorization where the web server serves it (8.3),
 * readable by it whatever our umask, to a new file (O_EXCL, O_NOFOLLOW): a CA naming a token
 * after a file that is there cannot make us overwrite it, delete it later, or hang on a FIFO;
 * the one exception is our own leftover for this token. Else offers it to the hook (PROGRAM
 * begin ...). 1 if taken on, then undone on every way out, as is one whose begin a signal or
 * --hook-timeout cuts short (the run ends then); 0 if the hook declines.
 */
static int xtake_on(const struct taken *t)
{
	size_t len = strlen(t->auth);
	int fd, err, ours, status;
	if (n_taken == MAX_NAMES)
		fail("more challenges than names");
	hold_signals(1);        /* no signal between making a file and noting t, whole */
	fd = t->file ? openat(acme_fd, t->token, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
			      O_CLOEXEC, 0644) : -1;
	err = errno;
	if ((ours = !t->file || fd >= 0 || (err == EEXIST && our_leftover(t->token, t->auth))))
		taken[n_taken++] = *t;
	hold_signals(0);
	if (!ours)
		fail("cannot create challenge file %s/%s: %s", run.acme_dir, t->token,
		     err == EEXIST ? "a file of that name is there already" : strerror(err));
	if (fd >= 0 && (fchmod(fd, 0644) || (errno = write_all(fd, t->auth, len)) || close(fd)))
		fail("cannot write challenge file %s/%s: %s", run.acme_dir, t->token,
		     strerror(errno));
	if (t->file)
		return 1;
	status = run_hook("begin", t, now_ms() + run.hook_timeout * 1000LL);
	n_taken -= status > 0 || status == -2;  /* declined, never begun: nothing to undo */
	if (status == -2)       /* fork failed: a limit on processes (ulimit -u) */
		fail("--hook %s begin %s %s: cannot start it: %s", run.hook, t->type, t->ident,
		     strerror(errno));
	if (status < 0)         /* killed: half done, so undone */
		fail("--hook %s begin %s %s: killed, or it did not end within --hook-timeout %d s",
		     run.hook, t->type, t->ident, run.hook_timeout);
	if (status == 127)      /* execv failed (#!/bin/bash on OpenWrt), or a shell's */
		fail("--hook %s begin %s %s: exit 127, command not found: is its #! interpreter,"
		     " or a command it runs, installed?", run.hook, t->type, t->ident);
	return status == 0;
}

/* Fetches the challenge file the way the CA will, before asking the CA to. */
static void xself_check(const struct ident *id, const char *token, const char *keyauth)
{
	struct conn plain = { .fd = -1 };
	struct resp r = { 0 };
	const char *err;
	char url[600], why[128], port[8] = "";
	int v6 = strchr(id->value, ':') != NULL, ok = 0;
	if (run.check_port)
		snprintf(port, sizeof port, ":%d", run.check_port);
	snprintf(url, sizeof url, "http://%s%s%s%s/.well-known/acme-challenge/%s", v6 ? "[" : "",
		 id->value, v6 ? "]" : "", port, token);
	if (!(err = http_try(&plain, "GET", url, NULL, &r, 0))) {
		while (r.body.len && memchr(" \t\r\n", r.body.p[r.body.len - 1], 4))
			r.body.len--;   /* a web server may add a line break */
		ok = r.status == 200 && r.body.len == strlen(keyauth) &&
		     !memcmp(r.body.p, keyauth, r.body.len);
		snprintf(why, sizeof why, "HTTP %d%s", r.status, r.status == 200 ?
			 " with other content" : r.status == 403 ?
			 " (may the web server read the file?)" : r.status / 100 == 3 ?
			 " (a redirect: the CA follows it, this check does not; --disable-check)" :
			 "");
		err = why;
	}
	conn_close(&plain);
	buf_free(&r.body);
	if (!ok)
		fail("Wrote file to %s/%s, but couldn't download %s: %s", run.acme_dir, token,
		     url, err);
}

/* j's challenge of type (NULL: the first with an error), or -1; others, of any shape, skipped. */
static int find_challenge(const struct json *j, const char *type)
{
	int list = json_get(j, 0, "challenges"), c;
	char t[16];
	for (c = json_item(j, list, -1); c >= 0; c = json_item(j, list, c))
		if (type ? json_get_str(j, c, "type", t, sizeof t) && !strcmp(t, type) :
		    json_get(j, c, "error") >= 0)
			return c;
	return -1;
}

/* Fetches authorization url into r, j: our name it is for (the *. one if wildcard); else fails. */
static const struct ident *xauthz_ident(struct acme *a, const char *url,
					const struct names *ns, struct resp *r, struct json *j)
{
	const struct ident *id;
	char type[8], value[MAX_NAME + 3] = "*.";
	int idt, wild;
	xpost(a, url, NULL, r, "authorization");
	xparse_object(r, j, "authorization");
	idt = json_get(j, 0, "identifier");
	wild = json_get(j, 0, "wildcard") >= 0 && j->t[json_get(j, 0, "wildcard")].type == J_TRUE;
	if (!json_get_str(j, idt, "type", type, sizeof type) ||
	    !json_get_str(j, idt, "value", value + 2, sizeof value - 2) ||
	    !(id = our_ident(ns, type, value + (wild ? 0 : 2))))
		fail("authorization %s: not for a name in the CSR", url);
	return id;
}

/*
 * Fills t for challenge c (of type) of authorization j for id: the token, checked as it may
 * become a file name, and AUTH: the key authorization (8.1), or for dns-01 the TXT value (8.4).
 */
static void xfill_taken(struct taken *t, const struct acme *a, const struct ident *id,
			const struct json *j, int c, const char *type)
{
	struct buf b = { 0 };
	unsigned char h[32];
	t->file = run.acme_dir && !strcmp(type, "http-01");     /* else the hook's */
	strcpy(t->type, type);
	strcpy(t->ident, id->value + (id->value[0] == '*' ? 2 : 0));
	if (!json_get_str(j, c, "token", t->token, sizeof t->token) ||
	    !is_b64url(t->token, MAX_TOKEN))
		fail("%s: the challenge token is not 1 to 255 base64url characters;"
		     " refusing it as a file name", id->value);
	snprintf(t->auth, sizeof t->auth, "%s.%s", t->token, a->key->thumbprint);
	if (!strcmp(type, "dns-01")) {
		sha256(t->auth, strlen(t->auth), h);
		buf_b64url(&b, h, sizeof h);
		strcpy(t->auth, b.p);
		buf_free(&b);
	}
}

/* The types of the challenges in j, comma-separated, into b: for messages. */
static const char *challenge_types(const struct json *j, struct buf *b)
{
	int list = json_get(j, 0, "challenges"), c;
	char t[16];
	for (c = json_item(j, list, -1); c >= 0; c = json_item(j, list, c))
		if (json_get_str(j, c, "type", t, sizeof t))
			buf_cat(b, b->len ? ", " : "", t, NULL);
	return b->len ? b->p : "none";
}

/*
 * Takes on a challenge of pending authorization j for id; its index in j, or the run ends: with
 * --dns-persist, dns-persist-01 (its record is there already); else http-01, a file in --acme-dir;
 * else the first http-01 or dns-01 the hook accepts, in the CA's order. Wildcards: DNS only.
 */
static int xtake_challenge(const struct acme *a, const struct ident *id, const struct json *j)
{
	struct taken t;
	struct buf offered = { 0 };
	char type[8];
	int wild = id->value[0] == '*', list = json_get(j, 0, "challenges"), c;
	if (run.dns_persist && (c = find_challenge(j, "dns-persist-01")) < 0)
		fail("%s: the CA offers no dns-persist-01 challenge (it offers: %s)", id->value,
		     challenge_types(j, &offered));
	if (run.dns_persist)
		return c;
	if (run.acme_dir && !wild && (c = find_challenge(j, "http-01")) >= 0) {
		xfill_taken(&t, a, id, j, c, "http-01");
		xtake_on(&t);
		if (!run.disable_check)
			xself_check(id, t.token, t.auth);
		return c;
	}
	for (c = json_item(j, list, -1); run.hook && c >= 0; c = json_item(j, list, c)) {
		if (!json_get_str(j, c, "type", type, sizeof type) ||
		    (strcmp(type, "dns-01") && (wild || strcmp(type, "http-01"))))
			continue;
		buf_cat(&offered, offered.len ? ", " : "", type, NULL);
		xfill_taken(&t, a, id, j, c, type);
		if (xtake_on(&t)) {
			buf_free(&offered);
			return c;
		}
	}
	if (run.hook)
		fail("%s: the hook declined every challenge (offered: %s)", id->value,
		     offered.len ? offered.p : "none of http-01 and dns-01");
	fail("%s: the CA offers no http-01 challenge%s", id->value,
	     wild ? ": a wildcard name needs DNS validation" : "");
}

/*
 * Appends the dns-persist-01 record (draft-ietf-acme-dns-persist) by which our account may prove
 * the name of value sans "*.", and *.name too if ns has it (one record for both), as a zone file
 * line. The issuer is the directory's, else the one challenge c of j names (c -1: none), else the
 * CA's CAA identity; the account is a hash when the directory asks for one (draft-02), else its
 * URL (draft-01). What came from the CA is checked: this line goes to stdout and into zones.
 */
static void xpersist_record(struct buf *b, const struct acme *a, const struct names *ns,
			    const char *value, const struct json *j, int c)
{
	const char *name = value + (value[0] == '*' ? 2 : 0);
	char issuer[MAX_NAME + 1], star[MAX_NAME + 3];
	unsigned char len = (unsigned char)strlen(name), h[32];
	struct buf in = { 0 }, v = { 0 };
	size_t k;
	snprintf(star, sizeof star, "*.%s", name);
	strcpy(issuer, a->issuer);
	if (!issuer[0] && c >= 0)
		first_str(j, json_get(j, c, "issuerDomainNames"), issuer, sizeof issuer);
	if (!issuer[0] && c >= 0)
		first_str(j, json_get(j, c, "issuer-domain-names"), issuer, sizeof issuer);
	if (!issuer[0])
		strcpy(issuer, a->caa);
	if (a->hash_prefix[0]) {        /* SHA-256 of the name's length, it, thumbprint, URL */
		buf_add(&in, &len, 1);
		buf_cat(&in, name, a->key->thumbprint, a->kid, NULL);
		sha256(in.p, in.len, h);
		buf_cat(&v, a->hash_prefix, "sha-256/", NULL);
		buf_b64url(&v, h, sizeof h);
	} else {
		buf_str(&v, a->kid);
	}
	for (k = 0; k < v.len && v.p[k] > 0x20 && v.p[k] < 0x7F && !strchr("\";\\", v.p[k]);)
		k++;            /* a byte that could end the record or the line is the CA's trick */
	lower_case(issuer);
	if (!issuer[0])
		fail("dns-persist-01: the directory names no issuer (meta.issuerDomainNames or"
		     " caaIdentities); --dns-persist's failure line gives the record");
	if (strspn(issuer, "abcdefghijklmnopqrstuvwxyz0123456789-.") != strlen(issuer) || k < v.len)
		fail("dns-persist-01: the CA's issuer name or account URI cannot go into a TXT"
		     " record");
	buf_cat(b, "_validation-persist.", name, ". IN TXT \"", issuer, "; accounturi=", v.p,
		our_ident(ns, "dns", star) ? "; policy=wildcard\"" : "\"", NULL);
	buf_free(&in);
	buf_free(&v);
}

/* --print-dns-persist into out: per DNS name sans "*.", the line by which our account proves it. */
static void xpersist_records(const struct acme *a, const struct names *ns, struct buf *out)
{
	int k;
	for (k = 0; k < ns->n; k++) {
		const char *v = ns->id[k].value;
		if (strcmp(ns->id[k].type, "dns") || (v[0] == '*' && our_ident(ns, "dns", v + 2)))
			continue;       /* an address, or a wildcard that its name's line covers */
		xpersist_record(out, a, ns, v, NULL, -1);
		buf_str(out, "\n");
	}
}

/* Ends the run for an order gone wrong: which name failed and why (--dns-persist: the record). */
static void xfail_authz(struct acme *a, struct order *o, const struct names *ns,
			const struct buf *authzs)
{
	struct resp r = { 0 };
	struct json j = { 0 };
	struct buf rec = { 0 };
	char status[MAX_STATUS], err[1400];
	size_t at;
	int c;
	for (at = 0; at < authzs->len; at += strlen(authzs->p + at) + 1) {
		const struct ident *id = xauthz_ident(a, authzs->p + at, ns, &r, &j);
		c = find_challenge(&j, run.dns_persist ? "dns-persist-01" : NULL);
		xneed_str(&j, 0, "status", status, sizeof status, "authorization");
		if (strcmp(status, "invalid"))
			continue;
		buf_str(&rec, "; the CA looks for ");
		if (run.dns_persist)
			xpersist_record(&rec, a, ns, id->value, &j, c);
		fail("%s: challenge did not pass (invalid): %s%s", id->value,
		     problem_text(&j, json_get(&j, c, "error"), err, sizeof err),
		     run.dns_persist ? rec.p : "");
	}
	xfail_order(o);
}

/*
 * The order's authorizations (7.5), each for one of our names: a CA must not make us answer for
 * others. A challenge is taken on for every one that is pending before any is answered, and all
 * are answered before any is waited for, so that the CA validates them side by side; then the
 * order is polled until it is ready (or invalid: then we find out which name failed, and why).
 * The hook hears done once it is ready.
 */
static void xauthorize(struct acme *a, struct order *o, const struct names *ns)
{
	struct buf authzs = { 0 }, chals = { 0 };       /* URLs, each ending in a NUL */
	struct resp r = { 0 };
	struct json j = { 0 };
	char url[MAX_URL], chal[MAX_URL], status[MAX_STATUS];
	size_t at;
	int list = json_get(&o->j, 0, "authorizations"), k, n = 0, done = 1;
	if (list < 0 || o->j.t[list].type != J_ARR)
		fail("newOrder: the order has no list of authorizations");
	for (k = json_item(&o->j, list, -1); k >= 0; k = json_item(&o->j, list, k)) {
		const struct ident *id;
		if (++n > ns->n || json_str(&o->j, k, url, sizeof url))
			fail("newOrder: more authorizations than names, or one that is no URL");
		buf_add(&authzs, url, strlen(url) + 1);
		id = xauthz_ident(a, url, ns, &r, &j);
		xneed_str(&j, 0, "status", status, sizeof status, "authorization");
		if (!strcmp(status, "valid")) {
			info("Already verified: %s", id->value);
		} else if (strcmp(status, "pending")) {
			fail("authorization for %s is %s", id->value, status);
		} else {
			info("Verifying %s...", id->value);
			xneed_str(&j, xtake_challenge(a, id, &j), "url", chal, sizeof chal,
				  "challenge");
			buf_add(&chals, chal, strlen(chal) + 1);
		}
		json_free(&j);
	}
	for (at = 0; at < chals.len; at += strlen(chals.p + at) + 1) {
		xpost(a, chals.p + at, "{}", &r, "challenge");
		xparse_object(&r, &j, "challenge");
		done &= json_get_str(&j, 0, "status", status, sizeof status) &&
			!strcmp(status, "valid");
		json_free(&j);
	}
	/* a CA that validates while it answers needs no wait: then poll at once */
	xpoll(a, o, done ? 0 : FIRST_POLL_DELAY);
	if (strcmp(o->status, "ready") && strcmp(o->status, "valid"))   /* invalid, or worse */
		xfail_authz(a, o, ns, &authzs);        /* the URLs checked, one per name at most */
	if (undo_challenges("done", 0))
		info("Warning: --hook %s done did not exit 0; the names are validated", run.hook);
	buf_free(&authzs);
	buf_free(&chals);
	buf_free(&r.body);
}

/*
 * Finalizes (7.4) the order with the CSR when ready, and waits until it is valid. A CA whose order
 * lags its authorizations says orderNotReady: then it is polled and finalized again, a few times;
 * so is one whose order stays ready, which 7.4 does not allow, MAX_FINALIZE_TRIES in all.
 */
static void xfinalize(struct acme *a, struct order *o, const struct buf *csr)
{
	struct buf p = { 0 };
	char url[MAX_URL];
	int tries;
	buf_str(&p, "{\"csr\":\"");
	buf_b64url(&p, csr->p, csr->len);
	buf_str(&p, "\"}");
	xpoll(a, o, FIRST_POLL_DELAY);  /* a reused order may be processing still */
	for (tries = 1; !strcmp(o->status, "ready"); tries++) {
		if (tries > MAX_FINALIZE_TRIES)
			fail("finalize: the order is still ready after %d finalize requests",
			     MAX_FINALIZE_TRIES);
		info("Signing certificate...");
		xneed_str(&o->j, 0, "finalize", url, sizeof url, "order");
		if (xsend(a, url, p.p, &o->r, "finalize", 0))
			xorder_state(o, "finalize");
		else if (is_problem(&o->r, "orderNotReady") && tries < MAX_FINALIZE_TRIES)
			strcpy(o->status, "pending");   /* poll it, then finalize again */
		else
			fail_problem("finalize", &o->r);
		xpoll(a, o, FIRST_POLL_DELAY);
	}
	if (strcmp(o->status, "valid"))
		xfail_order(o);
	buf_free(&p);
}

/*
 * 0 if pem is PEM certificates and nothing else, else -1: it goes to stdout as it is. No text
 * between or around the blocks (nor a bare CR, which line-based readers do not take for a line
 * break), only base64 inside them, each a certificate BearSSL can decode.
 */
static int check_chain(const struct buf *pem)
{
	struct buf der = { 0 };
	size_t pos = 0;
	char label[32];
	int n = 0, ok = 1;
	while (ok && pem->len && (pos += line_breaks(pem->p + pos)) < pem->len) {
		br_x509_decoder_context dc;
		/* pem_next takes a block that begins right at pos */
		ok = !strncmp(pem->p + pos, "-----BEGIN ", 11) &&
		     pem_next(pem, &pos, label, sizeof label, &der) == 1 &&
		     !strcmp(label, "CERTIFICATE") &&
		     (pos == pem->len || line_breaks(pem->p + pos));
		if (ok) {
			br_x509_decoder_init(&dc, NULL, NULL);   /* NULL: the DN is not kept */
			br_x509_decoder_push(&dc, der.p, der.len);
			ok = !br_x509_decoder_last_error(&dc);
			n++;
		}
	}
	buf_free(&der);
	return ok && n > 0 ? 0 : -1;
}

/* Downloads the order's certificate chain (7.4.2) into chain, checked before anyone sees it. */
static void xcertificate(struct acme *a, struct order *o, const struct buf *csr,
			 const struct names *ns, struct buf *chain)
{
	struct resp r = { 0 };
	char url[MAX_URL], now[64], ca_now[64];
	xneed_str(&o->j, 0, "certificate", url, sizeof url, "order");
	xpost(a, url, NULL, &r, "certificate download");
	if (check_chain(&r.body))
		fail("certificate download: the answer is not a PEM certificate chain");
	if (!cert_is_ours(&r.body, csr, ns, a->ca_time))
		fail("certificate download: the certificate of order %s is not for the CSR's key"
		     " and names, or is not valid now (our clock says %s, the CA's %s)", o->url,
		     date_text(time(NULL), now, sizeof now),
		     a->ca_time < 0 ? "none" : date_text(a->ca_time, ca_now, sizeof ca_now));
	*chain = r.body;                /* the chain is the download's body */
	info("Certificate signed!");
}

/* ======== 3. ACME requests: signed POSTs, nonces, polling, problems ===================== */

/* Appends "type: detail" of the problem document (RFC 7807) at token p to out (cap in all). */
static void add_problem(const struct json *j, int p, char *out, size_t cap)
{
	char type[256], detail[1024];
	size_t n = strlen(out);
	if (!json_get_str(j, p, "type", type, sizeof type))
		strcpy(type, "(no problem type)");
	json_get_str(j, p, "detail", detail, sizeof detail);      /* "" if there is none */
	snprintf(out + n, cap - n, "%s%s%s", type, detail[0] ? ": " : "", detail);
}

/*
 * out, holding the problem at token p, then each subproblem (6.7.1) with the identifier it is
 * for: "Cannot issue for 2 identifiers" alone does not say which.
 */
static const char *problem_text(const struct json *j, int p, char *out, size_t cap)
{
	int list = json_get(j, p, "subproblems"), k;
	char name[MAX_NAME + 1];
	size_t n;
	out[0] = 0;
	add_problem(j, p, out, cap);
	for (k = json_item(j, list, -1); k >= 0; k = json_item(j, list, k)) {
		json_get_str(j, json_get(j, k, "identifier"), "value", name, sizeof name);
		n = strlen(out);
		snprintf(out + n, cap - n, "; %s: ", name[0] ? name : "(no identifier)");
		add_problem(j, k, out, cap);
	}
	return out;
}

/* Ends the run with the server's answer, and where a user must act (userActionRequired, 7.3.3). */
static void fail_problem(const char *step, const struct resp *r)
{
	struct json j = { 0 };
	char text[1400] = "(no problem document)", where[MAX_URL] = "";
	if (!json_parse(&j, r->body.p, r->body.len)) {
		problem_text(&j, 0, text, sizeof text);
		json_get_str(&j, 0, "instance", where, sizeof where);
	}
	json_free(&j);
	fail("%s failed: HTTP %d %s%s%s%s%s%s%s", step, r->status, text,
	     r->retry_after[0] ? "; retry after " : "", r->retry_after, where[0] ? "; see " : "",
	     where, r->terms[0] ? "; terms of service: " : "", r->terms);
}

/* Ends the run for an order that is not valid: its URL, its status, and its error if any. */
static void xfail_order(struct order *o)
{
	char err[1400];
	fail("order %s is %s: %s", o->url, o->status,
	     problem_text(&o->j, json_get(&o->j, 0, "error"), err, sizeof err));
}

/* 1 if r is an error whose problem type is urn:ietf:params:acme:error:<kind>, else 0. */
static int is_problem(const struct resp *r, const char *kind)
{
	static const char ns[] = "urn:ietf:params:acme:error:";
	struct json j = { 0 };
	char type[128];
	int is = r->status >= 400 && !json_parse(&j, r->body.p, r->body.len) &&
		 json_get_str(&j, 0, "type", type, sizeof type) &&
		 !strncmp(type, ns, sizeof ns - 1) && !strcmp(type + sizeof ns - 1, kind);
	json_free(&j);
	return is;
}

/* Parses a response body that must be a JSON object into j. */
static void xparse_object(const struct resp *r, struct json *j, const char *step)
{
	if (json_parse(j, r->body.p, r->body.len) || j->t[0].type != J_OBJ)
		fail("%s: the server's answer is not a JSON object", step);
}

/* The Location the protocol requires (the account's kid, an order) into out, an https URL. */
static void xneed_location(const struct resp *r, char *out, const char *step)
{
	struct url u;
	if (!r->location[0] || url_parse(r->location, &u) || !u.https)
		fail("%s: the server sent no usable Location (an https URL)", step);
	strcpy(out, r->location);
}

/* A string member the protocol requires, decoded into out. */
static void xneed_str(const struct json *j, int obj, const char *key, char *out, size_t cap,
		      const char *step)
{
	if (!json_get_str(j, obj, key, out, cap))
		fail("%s: the server's answer has no usable \"%s\"", step, key);
}

/*
 * Returns if url is on the directory's host and port, else ends the run:
 * a hostile CA could point us, and our signed requests, at other machines.
 */
static void xneed_ca_host(const char *url, const char *step)
{
	struct url u, dir;
	url_parse(run.directory, &dir);         /* well-formed, once it was fetched */
	/* a malformed or http:// URL is refused as such when it is sent */
	if (!url_parse(url, &u) && u.https &&
	    (strcmp(u.host, dir.host) || strcmp(u.port, dir.port)))
		fail("%s: %s is not on the directory's host and port", step, url);
}

/* HEAD newNonce (7.2): a fresh nonce into a->nonce. */
static void xnew_nonce(struct acme *a, long long give_up)
{
	struct resp r = { 0 };
	xget(a, "HEAD", a->new_nonce, &r, "newNonce", give_up);
	if (r.status != 200 && r.status != 204)
		fail_problem("newNonce", &r);
	if (!r.nonce[0])
		fail("newNonce: the server sent no Replay-Nonce");
	strcpy(a->nonce, r.nonce);
	buf_free(&r.body);
}

/*
 * 1 after waiting out a 503's or 429's Retry-After (busy CA, rate limit) if
 * this request's waits stay within --max-wait and give_up (if not 0); else 0.
 */
static int waited_if_busy(const struct resp *r, const char *step, long long *waited,
			  long long give_up)
{
	long long ms = retry_after_ms(r->retry_after, r->date);
	if ((r->status != 503 && r->status != 429) || ms < 0 ||
	    *waited + ms > run.max_wait * 1000LL || (give_up && now_ms() + ms >= give_up))
		return 0;
	info("%s: the CA is busy (HTTP %d); trying again in %lld s", step, r->status,
	     (ms + 999) / 1000);
	sleep_ms(ms);
	*waited += ms;
	return 1;
}

/*
 * A signed POST (6.2), its answer into r: 1 if a success, 0 if an error the caller may handle.
 * payload NULL is a POST-as-GET. Each Replay-Nonce signs the next request (newNonce only after an
 * answer without one). After badNonce (with its nonce) or a busy CA's wait, it is sent again,
 * MAX_POST_TRIES sends at most; redirects are not followed. give_up, if not 0, bounds it all.
 */
static int xsend(struct acme *a, const char *url, const char *payload, struct resp *r,
		 const char *step, long long give_up)
{
	struct buf jws = { 0 };
	long long waited = 0;
	int ok, tries = 0;
	xneed_ca_host(url, step);
	do {
		if (!a->nonce[0])
			xnew_nonce(a, give_up);
		xjws_build(&jws, a->key, a->kid[0] ? a->kid : NULL, a->nonce, url, payload, NULL);
		xhttp(&a->conn, "POST", url, &jws, r, step, give_up);
		strcpy(a->nonce, r->nonce);
		ok = r->status >= 200 && r->status < 300;
	} while (!ok && ++tries < MAX_POST_TRIES &&
		 (is_problem(r, "badNonce") || waited_if_busy(r, step, &waited, give_up)));
	buf_free(&jws);
	return ok;
}

/* A signed POST that must succeed, its answer into r. */
static void xpost(struct acme *a, const char *url, const char *payload, struct resp *r,
		  const char *step)
{
	if (!xsend(a, url, payload, r, step, 0))
		fail_problem(step, r);
}

/*
 * A GET or HEAD on the CA's host (no JWS), its answer into r. A busy CA's Retry-After is waited
 * out as xsend does: per-endpoint rate limits answer the directory and newNonce with a 503.
 */
static void xget(struct acme *a, const char *method, const char *url, struct resp *r,
		 const char *step, long long give_up)
{
	long long waited = 0;
	int tries = 0;
	xneed_ca_host(url, step);
	do
		xhttp(&a->conn, method, url, NULL, r, step, give_up);
	while (++tries < MAX_POST_TRIES && waited_if_busy(r, step, &waited, give_up));
}

/* The order as the CA sent it in o->r: parsed into o->j, its status into o->status. */
static void xorder_state(struct order *o, const char *step)
{
	xparse_object(&o->r, &o->j, step);
	xneed_str(&o->j, 0, "status", o->status, sizeof o->status, step);
}

/*
 * Polls the order (POST-as-GET) while pending or processing, its new state into o: first after
 * delay ms (0: at once), then doubling, never sooner than the CA's Retry-After; --max-wait in all.
 */
static void xpoll(struct acme *a, struct order *o, long long delay)
{
	long long give_up = now_ms() + run.max_wait * 1000LL;
	while (!strcmp(o->status, "pending") || !strcmp(o->status, "processing")) {
		long long wait = retry_after_ms(o->r.retry_after, o->r.date);
		if (wait > run.max_wait * 1000LL)
			fail("order: still %s, and the server asks to wait %lld s"
			     " (Retry-After: %s), more than --max-wait %d", o->status, wait / 1000,
			     o->r.retry_after, run.max_wait);
		wait = wait > delay ? wait : delay;
		if (now_ms() + wait > give_up)
			fail("order: still %s after --max-wait %d s", o->status, run.max_wait);
		sleep_ms(wait);
		delay = delay ? delay * 2 : FIRST_POLL_DELAY;
		delay = delay < MAX_POLL_DELAY ? delay : MAX_POLL_DELAY;
		if (!xsend(a, o->url, NULL, &o->r, "order", give_up))   /* polls count too */
			fail_problem("order", &o->r);
		xorder_state(o, "order");
	}
}

/* ======== 4. Around the run: command line, signals, files =============================== */

static const char USAGE[] =
"usage: acme-tiny --account-key FILE --csr FILE --acme-dir DIR [options] > signed_chain.crt\n"
"       acme-tiny --account-key FILE --domains NAMES --domain-key FILE --acme-dir DIR ...\n"
"       acme-tiny ... --hook PROGRAM | --dns-persist | --print-dns-persist (DNS, no --acme-dir)\n"
"       acme-tiny --account-key FILE --revoke CERTFILE [--reason N]\n"
"       acme-tiny --account-key FILE --new-account-key FILE | --deactivate-account\n"
"\n"
"Gets a certificate from an ACME CA (Let's Encrypt by default) for the names\n"
"in a CSR, proving control of them with http-01 challenge files written to\n"
"--acme-dir, served by your web server at /.well-known/acme-challenge/.\n"
"The certificate chain goes to stdout, progress to stderr.\n"
"\n"
"  --account-key FILE    account private key, PEM or DER: RSA 2048-4096, EC P-256/P-384\n"
"  --csr FILE            certificate signing request, PEM or DER\n"
"  --acme-dir DIR        where to write the challenge files\n"
"  --hook PROGRAM        answer challenges by PROGRAM begin|done|failed TYPE NAME TOKEN AUTH\n"
"                        as uacme's hooks (dns-01, or http-01 without --acme-dir)\n"
"  --hook-timeout SECONDS  for one run of the hook (default 300)\n"
"  --dns-persist         answer dns-persist-01: the TXT records are set already\n"
"  --print-dns-persist   print those records for the account and the names, and exit\n"
"  --domains NAMES       instead of --csr: DNS names and IP addresses, comma-separated;\n"
"                        acme-tiny builds the CSR and signs it with --domain-key\n"
"  --domain-key FILE     the certificate's private key; made (--key-type) if missing\n"
"  --create-account-key  make the --account-key file (--key-type) if missing\n"
"  --key-type TYPE       for keys acme-tiny makes: p256 (default), p384,\n"
"                        rsa2048, rsa3072, rsa4096; PKCS#8 PEM, mode 0600\n"
"  --directory-url URL   ACME directory (default " DEFAULT_CA "/directory)\n"
"  --ca URL              as acme_tiny.py's: --directory-url URL/directory\n"
"  --contact URI ...     contact URIs for the account, e.g. mailto:you@example.com\n"
"  --disable-check       skip fetching each challenge file before the CA does\n"
"  --check-port PORT     port for that self-check (default 80)\n"
"  --output FILE         write the chain to FILE, not stdout: a temporary file beside it,\n"
"                        renamed over FILE only when the run succeeded; a certificate\n"
"                        FILE holds already is renewed only when due\n"
"  --days N              with --output: due with N days left (1-3650), or sooner by ARI\n"
"  --force               with --output: renew now, due or not\n"
"  --profile NAME        a certificate profile the CA lists in its directory,\n"
"                        e.g. Let's Encrypt's shortlived (needed for IP addresses)\n"
"  --ca-file FILE        CA certificates to trust for the ACME server, PEM\n"
"                        (default $SSL_CERT_FILE, else " DEFAULT_CA_FILE ")\n"
"  --timeout SECONDS     for one HTTP exchange, connecting included (default 30)\n"
"  --max-wait SECONDS    for each wait on the order, its polls included (default 300)\n"
"  --max-time SECONDS    for all of the talk with the CA (default 3600)\n"
"  --quiet               print errors only\n"
"  --stats               at the end, print HTTP requests, connections, peak memory\n"
"  --revoke CERTFILE     revoke its first certificate; --reason N: 0-10 but 7\n"
"  --revoke-key FILE     sign that with the certificate's key, not the account's\n"
"  --new-account-key FILE  move the account to this key (--create-account-key: make it)\n"
"  --deactivate-account  deactivate the account, for good\n"
"  --eab-kid KID, --eab-hmac-key KEY, --eab-alg HS256|HS384|HS512\n"
"                        External Account Binding for a new account (ZeroSSL, Google)\n"
"  --help (-h), --version\n"
"\n"
"Exit status: 0 done, 1 no certificate was due, 2 failure (one line on stderr says why).\n";

/* Ends the run with a usage error: one line, ending in a hint, exit 2. */
static __attribute__((noreturn, format(printf, 1, 2))) void usage_error(const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	fail("%s (try 'acme-tiny --help')", msg);
}

/*
 * 1 if argv[*i] is --name (value NULL), or --name VALUE or --name=VALUE
 * (the value into *value, *i on it); 0 if it is another argument. A VALUE that begins with --
 * is the next flag, as argparse has it (--output --quiet), not a value.
 */
static int xflag(char **argv, int *i, const char *name, const char **value)
{
	size_t n = strlen(name);
	if (strncmp(argv[*i], name, n) || (argv[*i][n] && (!value || argv[*i][n] != '=')))
		return 0;
	if (value && !(*value = argv[*i][n] ? argv[*i] + n + 1 : argv[++*i]))
		usage_error("missing value for %s", name);
	if (value && *value == argv[*i] && !strncmp(*value, "--", 2))
		usage_error("missing value for %s (one that begins with -- goes as %s=VALUE)",
			    name, name);
	if (value && !**value)          /* an unset variable in a cron line: --acme-dir "" is / */
		usage_error("empty value for %s", name);
	return 1;
}

/* The flags: a value to text, a number (1 to max) to number; a switch (max 0) sets number to 1. */
static const struct flag {
	const char *name;
	const char **text;
	int *number, max;
} FLAGS[] = {
	{ "--account-key", &run.account_key, NULL, 0 }, { "--csr", &run.csr, NULL, 0 },
	{ "--acme-dir", &run.acme_dir, NULL, 0 }, { "--directory-url", &run.directory, NULL, 0 },
	{ "--ca-file", &run.ca_file, NULL, 0 }, { "--domains", &run.domains, NULL, 0 },
	{ "--domain-key", &run.domain_key, NULL, 0 }, { "--output", &run.output, NULL, 0 },
	{ "--profile", &run.profile, NULL, 0 }, { "--key-type", &run.key_type_name, NULL, 0 },
	{ "--ca", &run.ca, NULL, 0 }, { "--revoke", &run.revoke, NULL, 0 },
	{ "--revoke-key", &run.revoke_key, NULL, 0 }, { "--reason", &run.reason, NULL, 0 },
	{ "--new-account-key", &run.new_account_key, NULL, 0 },
	{ "--eab-kid", &run.eab_kid, NULL, 0 }, { "--eab-hmac-key", &run.eab_hmac_key, NULL, 0 },
	{ "--eab-alg", &run.eab_alg, NULL, 0 }, { "--hook", &run.hook, NULL, 0 },
	{ "--check-port", NULL, &run.check_port, 65535 },
	{ "--timeout", NULL, &run.timeout, 999999 }, { "--max-wait", NULL, &run.max_wait, 999999 },
	{ "--max-time", NULL, &run.max_time, 999999 }, { "--days", NULL, &run.days, 3650 },
	{ "--hook-timeout", NULL, &run.hook_timeout, 999999 },
	{ "--create-account-key", NULL, &run.create_account_key, 0 },
	{ "--quiet", NULL, &run.quiet, 0 }, { "--disable-check", NULL, &run.disable_check, 0 },
	{ "--stats", NULL, &run.stats, 0 }, { "--force", NULL, &run.force, 0 },
	{ "--deactivate-account", NULL, &run.deactivate, 0 },
	{ "--dns-persist", NULL, &run.dns_persist, 0 },
	{ "--print-dns-persist", NULL, &run.print_persist, 0 },
	{ NULL, NULL, NULL, 0 }
};

/* Returns if the flags ask for one thing and give what it needs; else a usage error. */
static void xcheck_args(void)
{
	int actions = !!run.revoke + !!run.new_account_key + run.deactivate, k;
	size_t n = run.reason ? strlen(run.reason) : 0;
	const char *act = run.revoke ? "--revoke" : run.deactivate ? "--deactivate-account" :
			  "--new-account-key";
	for (k = 0; k < run.n_contacts; k++)
		if (!run.contacts[k][0])        /* as xflag: an unset variable */
			usage_error("empty value for --contact");
	if (actions > 1)
		usage_error("one of --revoke, --new-account-key, --deactivate-account at a time");
	if (n && (!run.revoke || strspn(run.reason, "0123456789") != n || n > 2 ||
		  atoi(run.reason) > 10 || atoi(run.reason) == 7))
		usage_error("--reason goes with --revoke: 0 to 10 but 7 (RFC 5280 5.3.1), not %s",
			    run.reason);
	if (!run.eab_kid != !run.eab_hmac_key || (strcmp(run.eab_alg, "HS256") &&
	    strcmp(run.eab_alg, "HS384") && strcmp(run.eab_alg, "HS512")))
		usage_error("--eab-kid and --eab-hmac-key go together; --eab-alg is HS256, HS384"
			    " or HS512");
	if (run.revoke ? !run.account_key && !run.revoke_key : actions && !run.account_key)
		usage_error("%s needs --account-key%s", act, run.revoke ? " or --revoke-key" : "");
	if (!actions && (!run.account_key || !run.csr == !run.domains ||
			 !run.domains != !run.domain_key ||
			 !(run.acme_dir || run.hook || run.dns_persist || run.print_persist)))
		usage_error("needs --account-key, --acme-dir (or --hook, or --dns-persist), and"
			    " either --csr or --domains with --domain-key");
	if (run.dns_persist && (run.acme_dir || run.hook))     /* they would go unused */
		usage_error("--dns-persist answers every challenge: not with --acme-dir or --hook");
	if (run.print_persist && (actions || run.output))
		usage_error("--print-dns-persist prints records to stdout, and does nothing else");
	if ((run.days || run.force) && (!run.output || actions))   /* else every run issues */
		usage_error("--days and --force go with --output when getting a certificate: they"
			    " look at the one it holds");
	if (actions && (run.csr || run.domains || run.domain_key || run.acme_dir || run.hook ||
	    run.dns_persist || run.output || run.profile || run.n_contacts || run.eab_kid))
		usage_error("%s does that alone, not with --csr, --domains, --domain-key,"
			    " --acme-dir, --hook, --dns-persist, --output, --profile, --contact,"
			    " --eab-kid", act);
	if (run.revoke_key && !run.revoke)
		usage_error("--revoke-key goes with --revoke");
	if (run.create_account_key && !run.account_key)         /* --revoke-key's run */
		usage_error("--create-account-key goes with --account-key");
}

/* Reads the command line into run; ends the run with a usage error. */
static void xparse_args(int argc, char **argv)
{
	const struct flag *f;
	const char *v = getenv("SSL_CERT_FILE");
	int i;
	if (v && v[0])          /* as OpenSSL has it, and so acme_tiny.py */
		run.ca_file = v;
	for (i = 1; i < argc; i++) {
		f = FLAGS;
		while (f->name && !xflag(argv, &i, f->name, f->text || f->max ? &v : NULL))
			f++;
		if (f->text) {
			*f->text = v;
		} else if (f->max && (strspn(v, "0123456789") != strlen(v) || strlen(v) > 6 ||
				      atoi(v) < 1 || atoi(v) > f->max)) {
			usage_error("%s takes a number from 1 to %d, not %s", f->name, f->max, v);
		} else if (f->name) {
			*f->number = f->max ? atoi(v) : 1;
		} else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			fputs(USAGE, stdout);
			exit(0);
		} else if (!strcmp(argv[i], "--version")) {
			puts("acme-tiny " VERSION);
			exit(0);
		} else if (!strcmp(argv[i], "--contact")) {
			/* like acme_tiny.py: every following argument up to the next option */
			run.contacts = argv + i + 1;
			run.n_contacts = 0;     /* given twice, the last one counts */
			while (i + 1 < argc && strncmp(argv[i + 1], "--", 2)) {
				i++;
				run.n_contacts++;
			}
			if (!run.n_contacts)    /* as xflag's: --contact $EMAIL, unset */
				usage_error("missing value for --contact");
		} else if (!strncmp(argv[i], "--contact=", 10)) {
			argv[i] += 10;          /* one URI, as argparse takes it */
			run.contacts = argv + i;
			run.n_contacts = 1;
		} else {
			usage_error("unknown argument %s", argv[i]);
		}
	}
	/* acme_tiny.py's --ca URL, deprecated there: URL/directory, unless it is its default */
	if (run.ca && strcmp(run.ca, DEFAULT_CA)) {
		static char dir[MAX_URL];
		if (snprintf(dir, sizeof dir, "%s/directory", run.ca) >= (int)sizeof dir)
			usage_error("--ca: a URL of at most %d bytes", MAX_URL - 11);
		run.directory = dir;
	}
	for (run.key_type = KEY_TYPES; strcmp(run.key_type->name, run.key_type_name);)
		if (!(++run.key_type)->name)
			usage_error("--key-type is one of p256 p384 rsa2048 rsa3072 rsa4096,"
				    " not %s", run.key_type_name);
	xcheck_args();
}

/* Ends the run on a signal in ending: challenge files removed, hook told, one line. */
static void on_signal(int sig)
{
	const char *what = sig == SIGALRM ? time_up : "acme-tiny: interrupted";
	const char *end = n_taken > 1 ? "; challenge files removed\n" :
			  n_taken ? "; challenge file removed\n" : "\n";
	int k;
	for (k = 0; k < n_taken; k++)
		if (!taken[k].file)
			end = "; challenges undone\n";
	if (hook_pid)
		kill(-hook_pid, SIGKILL);
	/* a supervisor such as procd kills 5 s after SIGTERM: the hook gets 4 s in all */
	undo_challenges("failed", now_ms() + 4000);
	if (write(2, what, strlen(what)) < 0 || write(2, end, strlen(end)) < 0) {
		/* nothing more we can do */
	}
	_exit(2);
}

/*
 * 1 if on_signal is to end the run on sig: every signal whose default ends the process, but a
 * fault's (a bug of ours, told better by its core dump), SIGKILL's, SIGPIPE's and SIGXFSZ's.
 */
static int ends_run(int sig)
{
	static const int others[] = { SIGKILL, SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU, SIGCONT, SIGCHLD,
				      SIGURG, SIGWINCH, SIGPIPE, SIGXFSZ, SIGSEGV, SIGBUS, SIGFPE,
				      SIGILL, SIGTRAP, SIGABRT, SIGSYS };
	size_t k;
	for (k = 0; k < sizeof others / sizeof others[0]; k++)
		if (sig == others[k])
			return 0;
	return 1;
}

/*
 * Sets on_signal for the signals that end a run, and lets them in: blocked in the mask we
 * inherited, they would leave --max-time and every cleanup dead. One inherited as ignored stays
 * so (nohup's SIGHUP, a script's SIGINT for a job in the background), but SIGALRM: --max-time's.
 * A closed pipe, or a file grown past its size limit, is an error of the write, which says so.
 */
static void catch_signals(void)
{
	struct sigaction sa = { .sa_handler = on_signal }, old;
	int sig;
	sigfillset(&sa.sa_mask);        /* one handler at a time: one line on stderr */
	sigemptyset(&ending);
	for (sig = 1; sig <= SIGRTMAX; sig++)   /* those the C library keeps refuse sigaction */
		if (ends_run(sig) && !sigaction(sig, NULL, &old) &&
		    (old.sa_handler != SIG_IGN || sig == SIGALRM) && !sigaction(sig, &sa, NULL))
			sigaddset(&ending, sig);
	hold_signals(0);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGXFSZ, SIG_IGN);
	signal(SIGCHLD, SIG_DFL);       /* inherited as ignored, no hook's end could be seen */
}

/* Holds off the signals on_signal takes (hold), or lets them in (!hold); holds do not nest. */
static void hold_signals(int hold)
{
	sigprocmask(hold ? SIG_BLOCK : SIG_UNBLOCK, &ending, NULL);
}

/* 1 if stdout was closed. A closed 0, 1 or 2 gets /dev/null, not our first file or socket. */
static int guard_std_fds(void)
{
	int stdout_closed = fcntl(1, F_GETFD) < 0, fd;
	while ((fd = open("/dev/null", O_RDWR)) >= 0 && fd < 3)
		continue;       /* each takes the lowest closed one of 0, 1, 2 */
	if (fd >= 3)
		close(fd);
	return stdout_closed;
}

/*
 * 1 if the real path path is a mount point in /proc/self/mountinfo (its fifth field), else 0.
 * Not st_dev against its directory's: an overlay (OpenWrt's root) gives each layer's own.
 */
static int is_mount_point(const char *path)
{
	FILE *f = fopen("/proc/self/mountinfo", "r");
	char line[4 * PATH_MAX], esc[4 * PATH_MAX], *p;
	size_t n = 0;
	int found = 0, k;
	for (; *path && n + 4 < sizeof esc; path++)         /* as the kernel writes it: \040 */
		n += (size_t)snprintf(esc + n, sizeof esc - n, strchr(" \t\n\\", *path) ?
				      "\\%03o" : "%c", *path);
	while (f && !found && fgets(line, sizeof line, f)) {
		for (p = line, k = 0; p && k < 4; k++)
			if ((p = strchr(p, ' ')))
				p++;
		found = p && !strncmp(p, esc, n) && p[n] == ' ';
	}
	if (f)
		fclose(f);
	return found;
}

/*
 * The file --output names, followed through symlinks so that a link stays a link, and tried the
 * way xwrite_file will write it before the CA is asked for anything: a certificate thrown away
 * still counts against rate limits. A temporary file beside it must take the old one's size and
 * 16 kB more, incompressible (a full disk, a file size limit), and a rename must be able to
 * replace it (not a mount point, nor another user's file in a sticky directory). It may not be a
 * file the run reads, nor a key. What it holds goes to old.
 */
static const char *xcheck_output(const char *path, struct buf *old)
{
	const char *inputs[] = { run.account_key, run.csr, run.domain_key, run.ca_file };
	static char real[PATH_MAX];
	char tmp[4096];
	unsigned char room[4096] = { 0 };
	const char *why = NULL;
	struct stat st, in;
	int exists = !stat(path, &st), fd, err = 0, left;      /* through symlinks */
	size_t k, i;
	xrefuse_dangling(path, "--output");
	if (exists && realpath(path, real))
		path = real;
	if (!path[0] || path[strlen(path) - 1] == '/' || (exists && !S_ISREG(st.st_mode)))
		fail("--output %s: not a regular file", path);
	for (k = 0; exists && k < sizeof inputs / sizeof inputs[0]; k++)
		if (inputs[k] && !stat(inputs[k], &in) && st.st_dev == in.st_dev &&
		    st.st_ino == in.st_ino)
			fail("--output %s: that is %s, which this run reads", path, inputs[k]);
	if (exists) {
		xread_file(path, "--output", old);
		if (strstr(old->p, " PRIVATE KEY-----") || memchr(old->p, 0, old->len))
			fail("--output %s holds a private key, or binary data (DER): it is not"
			     " replaced by a certificate", path);
	}
	hold_signals(1);                /* no signal may leave the temporary file behind */
	fd = xcreate_temp(path, tmp, sizeof tmp);
	for (k = 0; !err && k < old->len + 16384; k += sizeof room) {
		for (i = 0; i < sizeof room; i += 32)   /* what jffs2 and ubifs cannot compress */
			sha256(room + (i + sizeof room - 32) % sizeof room, 32, room + i);
		err = write_all(fd, room, sizeof room);
	}
	if (close(fd) && !err)
		err = errno;            /* NFS tells a full disk here */
	if ((left = unlink(tmp)) && err)        /* the trial's own error first */
		fail("--output %s cannot be replaced: %s; cannot remove %s", path, strerror(err),
		     tmp);
	if (left)
		fail("cannot remove %s: %s", tmp, strerror(errno));
	hold_signals(0);
	if (exists && is_mount_point(path))             /* rename(2) cannot replace it */
		why = "it is a mount point (a bind-mounted file?)";
	if (exists && !stat(dirname(tmp), &in) && (in.st_mode & S_ISVTX) && geteuid() &&
	    geteuid() != st.st_uid && geteuid() != in.st_uid)               /* nor this */
		why = "another user's file in a sticky directory";
	if (err || why)
		fail("--output %s cannot be replaced: %s", path, why ? why : strerror(err));
	return path;
}

/* Makes a key of --key-type at path unless a file is there already. */
static void xcreate_key_if_missing(const char *path, const char *what)
{
	xrefuse_dangling(path, what);
	if (access(path, F_OK) && errno == ENOENT) {
		info("Creating %s %s (%s)...", what, path, run.key_type->name);
		xgenerate_key(path, run.key_type);
	}
}

/*
 * The names into ns, the CSR into csr: from --csr (the domain key is never
 * read), or built for --domains and signed with --domain-key, made if missing.
 */
static void xnames_and_csr(struct names *ns, struct buf *csr)
{
	static struct key domain;
	struct buf der = { 0 }, found = { 0 };
	int k;
	if (run.domains) {
		if (names_from_list(run.domains, ns))
			fail("--domains: expected DNS names or IP addresses separated by commas"
			     " (at most %d)", MAX_NAMES);
		xcreate_key_if_missing(run.domain_key, "domain key");
		xload_key(run.domain_key, "domain key", &domain, &der);
		xcsr_build(csr, ns, &domain);
		buf_free(&der);
	} else {
		info("Parsing CSR...");
		xload_der(run.csr, "CSR", CSR_LABELS, csr);
		if (csr_names((const unsigned char *)csr->p, csr->len, ns))
			fail("CSR %s: malformed, or without DNS names or IP addresses (at most %d)",
			     run.csr, MAX_NAMES);
	}
	for (k = 0; k < ns->n; k++) {
		if (ns->id[k].value[0] == '*' && !run.hook && !run.dns_persist &&
		    !run.print_persist)
			fail("%s: a wildcard name needs DNS validation: --hook (dns-01) or"
			     " --dns-persist", ns->id[k].value);
		buf_cat(&found, k ? ", " : "", ns->id[k].value, NULL);
	}
	info("Found domains: %s", found.p);
	buf_free(&found);
}

/* Prints what --stats shows; peak memory is the kernel's VmHWM (time(1) cannot see below 1 MB). */
static void print_stats(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long hwm = -1;
	while (f && fgets(line, sizeof line, f))
		if (!strncmp(line, "VmHWM:", 6))
			hwm = atol(line + 6);
	if (f)
		fclose(f);
	fprintf(stderr, "stats: %d HTTP requests, %d connections, peak memory (VmHWM) %ld kB\n",
		stats.requests, stats.connections, hwm);
}

/* ======== 5. HTTP/1.1 over TCP or TLS =================================================== */

static const char TOO_LARGE[] = "response body larger than 128 KiB";
static const char PRINTABLE[] = " !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ"
				"[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~";

/*
 * Splits an http:// or https:// URL, checked byte by byte: nothing from a server reaches a
 * request line or a Host header unless it is plain printable ASCII. 0, or -1.
 */
static int url_parse(const char *s, struct url *u)
{
	const char *host, *path, *end, *after;
	unsigned char ip[16];
	size_t k;
	memset(u, 0, sizeof *u);
	u->https = !strncmp(s, "https://", 8);
	if (!u->https && strncmp(s, "http://", 7))
		return -1;
	host = s + (u->https ? 8 : 7);
	path = host + strcspn(host, "/");
	if (*host == '[') {
		if (!(end = memchr(host, ']', (size_t)(path - host))))
			return -1;
		after = end + 1;
		host++;
	} else {
		end = memchr(host, ':', (size_t)(path - host));
		after = end = end ? end : path;
	}
	if (copy_str(u->host, sizeof u->host, host, (size_t)(end - host)) || !u->host[0] ||
	    (host[-1] == '[' ? inet_pton(AF_INET6, u->host, ip) != 1 :   /* brackets: IPv6 */
	     u->host[strspn(u->host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
			    "0123456789-.")] != 0))
		return -1;
	lower_case(u->host);            /* host names compare case-insensitively */
	strcpy(u->port, u->https ? "443" : "80");
	if (after < path) {
		k = (size_t)(path - after - 1);
		if (*after != ':' || copy_str(u->port, sizeof u->port, after + 1, k) ||
		    number(u->port, (int)k) < 1 || number(u->port, (int)k) > 65535)
			return -1;
	}
	if (copy_str(u->path, sizeof u->path, *path ? path : "/", *path ? strlen(path) : 1) ||
	    u->path[strspn(u->path, PRINTABLE + 1)])         /* + 1: not even a space */
		return -1;
	return 0;
}

/* ---- trust anchors: the CA certificates that TLS servers must chain to ---- */

static br_x509_trust_anchor *anchors;
static size_t n_anchors;

/* Adds the certificate in der as a trust anchor, unless BearSSL cannot read it. */
static void add_anchor(const struct buf *der)
{
	br_x509_decoder_context dc;
	struct buf mem = { 0 };         /* the anchor's bytes: its DN, then its key */
	br_x509_trust_anchor *ta;
	br_x509_pkey *pk;
	size_t dn;
	br_x509_decoder_init(&dc, buf_append, &mem);
	br_x509_decoder_push(&dc, der->p, der->len);
	if (!(pk = br_x509_decoder_get_pkey(&dc))) {
		buf_free(&mem);
		return;
	}
	if (!(ta = realloc(anchors, (n_anchors + 1) * sizeof *ta)))
		fail("out of memory");
	anchors = ta;
	ta += n_anchors++;
	ta->flags = br_x509_decoder_isCA(&dc) ? BR_X509_TA_CA : 0;
	ta->pkey = *pk;
	dn = mem.len;
	if (pk->key_type == BR_KEYTYPE_RSA) {
		buf_add(&mem, pk->key.rsa.n, pk->key.rsa.nlen);
		buf_add(&mem, pk->key.rsa.e, pk->key.rsa.elen);
		ta->pkey.key.rsa.n = (unsigned char *)mem.p + dn;
		ta->pkey.key.rsa.e = ta->pkey.key.rsa.n + pk->key.rsa.nlen;
	} else {
		buf_add(&mem, pk->key.ec.q, pk->key.ec.qlen);
		ta->pkey.key.ec.q = (unsigned char *)mem.p + dn;
	}
	ta->dn.data = (unsigned char *)mem.p;   /* freed by free_trust_anchors */
	ta->dn.len = dn;
}

/* Loads every certificate of a PEM bundle that BearSSL can use. */
static void xload_trust_anchors(const char *path)
{
	struct buf file = { 0 }, der = { 0 };
	size_t pos = 0;
	char name[64];
	int r;
	xread_file(path, "CA file", &file);
	while ((r = pem_next(&file, &pos, name, sizeof name, &der)) > 0)
		if (!strcmp(name, "CERTIFICATE"))
			add_anchor(&der);
	if (r < 0 || !n_anchors)
		fail("CA file %s: %s", path, r < 0 ? "malformed PEM" : "no usable certificates");
	buf_free(&file);
	buf_free(&der);
}

/* Frees the trust anchors, each one block of bytes. */
static void free_trust_anchors(void)
{
	while (n_anchors)
		free(anchors[--n_anchors].dn.data);
	free(anchors);
	anchors = NULL;
}

/* ---- connections ---- */

/* -1, noting why the exchange failed: the one place a reason goes into c->why. */
static int conn_error(struct conn *c, const char *why)
{
	c->why = why;
	return -1;
}

/* 0 once fd is ready for events; -1 when the exchange's deadline passes, or on error. */
static int sock_wait(struct conn *c, short events)
{
	struct pollfd p = { c->fd, events, 0 };
	for (;;) {
		long long left = c->deadline - now_ms();
		int r;
		if (left <= 0)
			return conn_error(c, "timed out");
		if ((r = poll(&p, 1, (int)left)) > 0)
			return 0;
		if (r < 0 && errno != EINTR)
			return conn_error(c, strerror(errno));
	}
}

/* One recv or send within the deadline: bytes, 0 at the end of the stream, -1. */
static int sock_io(struct conn *c, void *buf, size_t len, int writing)
{
	for (;;) {
		ssize_t n;
		/* try first and poll only when the socket is not ready: half the syscalls */
		if (now_ms() >= c->deadline)
			return conn_error(c, "timed out");
		n = writing ? send(c->fd, buf, len, MSG_NOSIGNAL) : recv(c->fd, buf, len, 0);
		c->raw += !writing && n > 0 ? (size_t)n : 0;
		if (n >= 0)
			return (int)n;
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			return conn_error(c, strerror(errno));
		if (sock_wait(c, writing ? POLLOUT : POLLIN))
			return -1;
	}
}

/* A plain connection's read: bytes, 0 at the end of the stream, -1. */
static int sock_read(struct conn *c, unsigned char *buf, size_t len)
{
	return sock_io(c, buf, len, 0);
}

/* BearSSL's transport callbacks, through our deadline: bytes, or -1. */
static int tls_low_read(void *ctx, unsigned char *buf, size_t len)
{
	int n = sock_read(ctx, buf, len);
	return n > 0 ? n : n == 0 ? conn_error(ctx, "connection closed") : -1;
}

/* BearSSL's transport callback for writes: bytes, or -1. */
static int tls_low_write(void *ctx, const unsigned char *buf, size_t len)
{
	return sock_io(ctx, (void *)buf, len, 1);
}

/* What BearSSL's error code err means for the user. */
static const char *tls_error(int err)
{
	static char msg[160];
	char now[64];
	switch (err) {
	case BR_ERR_X509_EXPIRED:
		snprintf(msg, sizeof msg, "TLS: server certificate expired or not yet valid"
			 " (is the clock right? it says %s)",
			 date_text(time(NULL), now, sizeof now));
		return msg;
	case BR_ERR_X509_BAD_SERVER_NAME:
		return "TLS: server certificate is for another host name";
	case BR_ERR_X509_NOT_TRUSTED:
		return "TLS: server certificate is not from a CA in --ca-file";
	case BR_ERR_UNSUPPORTED_VERSION:
	case BR_ERR_BAD_VERSION:
	case BR_ERR_RECV_FATAL_ALERT + 70:      /* protocol_version */
		return "TLS: the server does not answer in TLS 1.2 (TLS 1.3 only? plain HTTP?)";
	case BR_ERR_RECV_FATAL_ALERT + 40:      /* handshake_failure */
		return "TLS: the server refused the handshake (alert 40: none of our cipher suites,"
		       " ECDHE with AES-GCM, or curves? a client certificate wanted?)";
	}
	if (err > BR_ERR_RECV_FATAL_ALERT && err < BR_ERR_SEND_FATAL_ALERT)
		snprintf(msg, sizeof msg, "TLS: the server sent alert %d", err - 256);
	else
		snprintf(msg, sizeof msg, "TLS error %d (BearSSL's BR_ERR_* codes)", err);
	return msg;
}

/* After a TLS call failed: 0 if the peer closed TLS properly, else -1 with why. */
static int tls_failed(struct conn *c)
{
	int err = br_ssl_engine_last_error(&c->tls->sc.eng);
	if (err == BR_ERR_OK)
		return 0;
	/* an I/O error was noted where it happened, with its reason */
	return err == BR_ERR_IO && c->why ? -1 : conn_error(c, tls_error(err));
}

/* A TLS connection's read: bytes, 0 at the end of the stream, -1. */
static int tls_read(struct conn *c, unsigned char *buf, size_t len)
{
	int n = br_sslio_read(&c->tls->io, buf, len);
	return n > 0 ? n : tls_failed(c);
}

/* Sends all of data: 0, or -1 with why. */
static int conn_write(struct conn *c, const char *data, size_t len)
{
	if (c->tls) {
		if (!br_sslio_write_all(&c->tls->io, data, len) && !br_sslio_flush(&c->tls->io))
			return 0;
		return tls_failed(c) ? -1 : conn_error(c, "connection closed");
	}
	while (len > 0) {
		int n = sock_io(c, (void *)data, len, 1);
		if (n < 0)
			return -1;
		data += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Closes the connection, if open, and drops what was buffered. */
static void conn_close(struct conn *c)
{
	if (c->tls)
		buf_free(&c->tls->leaf);        /* kept for a handshake that ended early */
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->inpos = c->inlen = 0;
}

/* Finishes a non-blocking connect(): 0 once connected, or -1 with why. */
static int connect_wait(struct conn *c)
{
	int err = errno;
	socklen_t len = sizeof err;
	if (err == EINPROGRESS) {
		if (sock_wait(c, POLLOUT))
			return -1;
		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len))
			err = errno;
	}
	return err ? conn_error(c, strerror(err)) : 0;
}

/* Connects to the first address of host that answers, each within --timeout: 0, or -1. */
static int tcp_connect(struct conn *c, const struct url *u, long long give_up)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_NUMERICSERV }, *res, *ai;
	int err;
	if ((err = getaddrinfo(u->host, u->port, &hints, &res)))
		return conn_error(c, gai_strerror(err));
	for (ai = res; ai && c->fd < 0; ai = ai->ai_next) {
		/* each address gets all of --timeout: one that black-holes may not use it up */
		c->deadline = now_ms() + run.timeout * 1000LL;
		if (give_up && give_up < c->deadline)
			c->deadline = give_up;
		if ((c->fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
				    ai->ai_protocol)) < 0)
			conn_error(c, strerror(errno));
		else if (connect(c->fd, ai->ai_addr, ai->ai_addrlen) && connect_wait(c))
			conn_close(c);
	}
	freeaddrinfo(res);
	return c->fd < 0 ? -1 : 0;
}

/*
 * Certificates are checked at t, 64-bit seconds since 1970: the 32-bit time() that Debian's
 * armhf and mipsel BearSSL calls fails after 2038-01-19. BearSSL counts days from 0000-01-01.
 */
static void set_x509_time(br_x509_minimal_context *xc, long long t)
{
	br_x509_minimal_set_time(xc, (uint32_t)(t / 86400 + 719528), (uint32_t)(t % 86400));
}

/*
 * A CA addressed by IP: BearSSL 0.6 matches DNS names only, so three methods of ours wrap the
 * minimal X.509 engine's to keep the server's certificate and check its iPAddress subjectAltName.
 */
static br_x509_class ip_engine;

/* Counts the chain's certificates: the first is the server's. */
static void ip_start_cert(const br_x509_class **ctx, uint32_t len)
{
	((struct tls *)ctx)->certs++;
	br_x509_minimal_vtable.start_cert(ctx, len);
}

/* Keeps the bytes of the server's certificate, then hands them on. */
static void ip_append(const br_x509_class **ctx, const unsigned char *buf, size_t len)
{
	struct tls *t = (struct tls *)ctx;
	if (t->certs == 1 && t->leaf.len + len <= MAX_BODY)     /* the server's own */
		buf_add(&t->leaf, buf, len);
	br_x509_minimal_vtable.append(ctx, buf, len);
}

/* The minimal engine's verdict, or BR_ERR_X509_BAD_SERVER_NAME if the address is not in it. */
static unsigned ip_end_chain(const br_x509_class **ctx)
{
	static struct names ns;
	struct tls *t = (struct tls *)ctx;
	struct cert c;
	unsigned err = br_x509_minimal_vtable.end_chain(ctx);
	if (!err && (cert_parse(t->leaf.p, t->leaf.len, &c, &ns) || !our_ident(&ns, "ip", t->ip)))
		err = BR_ERR_X509_BAD_SERVER_NAME;
	buf_free(&t->leaf);
	return err;
}

/*
 * TLS 1.2 with ECDHE and AES-GCM only: what every public ACME CA offers. Naming just these (not
 * br_ssl_client_init_full) keeps CBC, 3DES, RC4-era code and TLS 1.0 out of the binary, about
 * 30 kB of a router's flash, and leaving ChaCha20-Poly1305 out 8 kB more: a run moves some 20 kB.
 */
static void tls_init(struct tls *t)
{
	static const uint16_t suites[] = {
		BR_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
		BR_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
		BR_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
		BR_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	};
	br_ssl_client_zero(&t->sc);
	br_ssl_engine_set_versions(&t->sc.eng, BR_TLS12, BR_TLS12);
	br_ssl_engine_set_suites(&t->sc.eng, suites, sizeof suites / sizeof suites[0]);
	br_x509_minimal_init(&t->xc, &br_sha256_vtable, anchors, n_anchors);
	set_x509_time(&t->xc, time(NULL));
	br_ssl_engine_set_hash(&t->sc.eng, br_sha256_ID, &br_sha256_vtable);
	br_ssl_engine_set_hash(&t->sc.eng, br_sha384_ID, &br_sha384_vtable);
	br_ssl_engine_set_hash(&t->sc.eng, br_sha512_ID, &br_sha512_vtable);
	br_x509_minimal_set_hash(&t->xc, br_sha256_ID, &br_sha256_vtable);
	br_x509_minimal_set_hash(&t->xc, br_sha384_ID, &br_sha384_vtable);
	br_x509_minimal_set_hash(&t->xc, br_sha512_ID, &br_sha512_vtable);
	br_x509_minimal_set_rsa(&t->xc, br_rsa_pkcs1_vrfy_get_default());
	br_x509_minimal_set_ecdsa(&t->xc, &ec_nist, br_ecdsa_vrfy_asn1_get_default());
	br_ssl_engine_set_default_rsavrfy(&t->sc.eng);
	br_ssl_engine_set_ec(&t->sc.eng, &ec_nist);
	br_ssl_engine_set_ecdsa(&t->sc.eng, br_ecdsa_vrfy_asn1_get_default());
	br_ssl_engine_set_prf_sha256(&t->sc.eng, &br_tls12_sha256_prf);
	br_ssl_engine_set_prf_sha384(&t->sc.eng, &br_tls12_sha384_prf);
	/*
	 * AES-GCM by BearSSL's portable constant-time code alone (64-bit registers or 32): its
	 * default adds AES-NI and PCLMUL code, 4 kB of a router's flash, for a run's few kB.
	 */
	br_ssl_engine_set_gcm(&t->sc.eng, &br_sslrec_in_gcm_vtable, &br_sslrec_out_gcm_vtable);
	br_ssl_engine_set_aes_ctr(&t->sc.eng, UINTPTR_MAX > 0xFFFFFFFFu ?
				  &br_aes_ct64_ctr_vtable : &br_aes_ct_ctr_vtable);
	br_ssl_engine_set_ghash(&t->sc.eng, UINTPTR_MAX > 0xFFFFFFFFu ? br_ghash_ctmul64 :
				br_ghash_ctmul);
	br_ssl_engine_set_x509(&t->sc.eng, &t->xc.vtable);
}

/* Opens a connection for u: TCP, then TLS (verified, with SNI) for https: 0, or -1 with why. */
static int conn_open(struct conn *c, const struct url *u, long long give_up)
{
	unsigned char ip[16];
	int af = strchr(u->host, ':') ? AF_INET6 : AF_INET;
	if (tcp_connect(c, u, give_up))
		return -1;
	stats.connections++;
	strcpy(c->host, u->host);
	strcpy(c->port, u->port);
	c->read = c->tls ? tls_read : sock_read;
	if (!c->tls)
		return 0;
	tls_init(c->tls);
	br_ssl_engine_set_buffer(&c->tls->sc.eng, c->tls->iobuf, sizeof c->tls->iobuf, 0);
	c->tls->ip[0] = 0;
	c->tls->certs = 0;
	if (inet_pton(af, u->host, ip) == 1) {
		/* no SNI for an address (RFC 6066 3), and our own check of it */
		inet_ntop(af, ip, c->tls->ip, sizeof c->tls->ip);
		ip_engine = br_x509_minimal_vtable;
		ip_engine.start_cert = ip_start_cert;
		ip_engine.append = ip_append;
		ip_engine.end_chain = ip_end_chain;
		c->tls->xc.vtable = &ip_engine;
	}
	if (!br_ssl_client_reset(&c->tls->sc, c->tls->ip[0] ? NULL : u->host, 0)) {
		conn_close(c);          /* not kept as if it were a connection */
		return conn_error(c, tls_error(br_ssl_engine_last_error(&c->tls->sc.eng)));
	}
	br_sslio_init(&c->tls->io, &c->tls->sc.eng, tls_low_read, c, tls_low_write, c);
	return 0;
}

/* ---- reading a response ---- */

/* 1 once a byte is buffered; at the end of the stream 0, or -1 if at_end says why; else -1. */
static int conn_fill(struct conn *c, const char *at_end)
{
	int n;
	if (c->inpos < c->inlen)
		return 1;
	if ((n = c->read(c, c->in, sizeof c->in)) == 0 && at_end)
		return conn_error(c, at_end);
	if (n <= 0)
		return n;
	c->inpos = 0;
	c->inlen = (size_t)n;
	c->got += (size_t)n;
	return 1;
}

/* Reads one CRLF-ended line into line (without CRLF); its length, or -1. */
static int conn_line(struct conn *c, char *line, size_t cap)
{
	size_t n = 0;
	for (;;) {
		char ch;
		if (conn_fill(c, "connection closed in the middle of the headers") < 0)
			return -1;
		ch = (char)c->in[c->inpos++];
		if (ch == '\n' && n > 0 && line[n - 1] == '\r') {
			line[--n] = 0;
			return (int)n;
		}
		if (n > 0 && line[n - 1] == '\r')      /* RFC 9112 2.2: a CR only before LF */
			return conn_error(c, "CR without LF");
		if (ch == '\n' || ch == 0 || n + 1 >= cap)
			return conn_error(c, ch == '\n' ? "line without CR" :
					  ch ? "header line too long" : "NUL in header");
		line[n++] = ch;
	}
}

/* Appends exactly n more bytes of the stream to body: 0, or -1 with why. */
static int conn_take(struct conn *c, struct buf *body, size_t n)
{
	while (n > 0) {
		size_t k;
		if (conn_fill(c, "connection closed in the middle of the body") < 0)
			return -1;
		k = c->inlen - c->inpos;
		k = k < n ? k : n;
		buf_add(body, c->in + c->inpos, k);
		c->inpos += k;
		n -= k;
	}
	return 0;
}

/* Takes one header line apart and keeps what we use. 0, or -1 with why. */
static int parse_header(struct conn *c, char *line, struct resp *r, long *clen, int *chunked)
{
	char *v = strchr(line, ':'), *e, *rel;
	size_t n = v ? (size_t)(v - line) : 0, url;
	if (!n || strcspn(line, " \t") < n)
		return conn_error(c, "malformed header line");
	*v++ = 0;
	v += strspn(v, " \t");
	for (e = v + strlen(v); e > v && (e[-1] == ' ' || e[-1] == '\t');)
		*--e = 0;
	if (!strcasecmp(line, "content-length")) {
		size_t d = strspn(v, "0123456789");
		long x = atol(v);
		if (!d || v[d] || d > 9 || (*clen >= 0 && *clen != x))
			return conn_error(c, "malformed Content-Length");
		*clen = x;
	} else if (!strcasecmp(line, "transfer-encoding")) {
		if (strcasecmp(v, "chunked"))
			return conn_error(c, "unsupported Transfer-Encoding");
		*chunked = 1;
	} else if (!strcasecmp(line, "connection")) {
		r->close |= !strcasecmp(v, "close");
	} else if (!strcasecmp(line, "replay-nonce") && is_b64url(v, sizeof r->nonce - 1)) {
		strcpy(r->nonce, v);
	} else if (!strcasecmp(line, "location") &&
		   copy_str(r->location, sizeof r->location, v, strlen(v))) {
		return conn_error(c, "Location header too long");
	} else if (!strcasecmp(line, "retry-after") && strspn(v, PRINTABLE) == strlen(v)) {
		copy_str(r->retry_after, sizeof r->retry_after, v, strlen(v));
	} else if (!strcasecmp(line, "date") && strspn(v, PRINTABLE) == strlen(v)) {
		copy_str(r->date, sizeof r->date, v, strlen(v));
	} else if (!strcasecmp(line, "link") && strspn(v, PRINTABLE) == strlen(v) &&
		   (rel = strstr(v, "rel=\"terms-of-service\""))) {
		for (e = rel; e > v && e[-1] != '<';)   /* its <URL>: the last one before it */
			e--;
		url = strcspn(e, ">");
		if (e > v && e + url < rel)
			copy_str(r->terms, sizeof r->terms, e, url);
	}
	return 0;
}

/* The status line and headers (RFC 9112 4, 5; *clen comes in -1, *chunked 0): 0, or -1 with why. */
static int read_head(struct conn *c, struct resp *r, long *clen, int *chunked)
{
	char line[MAX_LINE];
	int n, count;
	if (conn_line(c, line, sizeof line) < 0)
		return -1;
	if ((strncmp(line, "HTTP/1.1 ", 9) && strncmp(line, "HTTP/1.0 ", 9)) ||
	    strspn(line + 9, "0123456789") != 3 || (line[12] && line[12] != ' ') ||
	    (r->status = atoi(line + 9)) < 200)
		return conn_error(c, "malformed or unexpected status line");
	r->close = line[7] == '0';
	for (count = 0; (n = conn_line(c, line, sizeof line)) != 0; count++) {
		if (count == MAX_HEADERS)
			return conn_error(c, "too many header lines");
		if (n < 0 || parse_header(c, line, r, clen, chunked))
			return -1;
	}
	if (*chunked && *clen >= 0)
		return conn_error(c, "both Content-Length and chunked");
	return 0;
}

/* A chunked body (RFC 9112 section 7.1), extensions and trailers ignored: 0, or -1 with why. */
static int read_chunked(struct conn *c, struct buf *body)
{
	char line[MAX_LINE];
	int n, count;
	for (;;) {
		size_t size = 0, k, ws;
		if (conn_line(c, line, sizeof line) < 0)
			return -1;
		for (k = 0; hex_digit(line[k]) >= 0 && k < 8; k++)
			size = size * 16 + (size_t)hex_digit(line[k]);
		ws = k + strspn(line + k, " \t");      /* BWS: then an extension, or nothing */
		if (!k || (line[ws] && line[ws] != ';'))
			return conn_error(c, "malformed chunk size");
		if (size > MAX_BODY - body->len)
			return conn_error(c, TOO_LARGE);
		if (!size)
			break;
		if (conn_take(c, body, size) || (n = conn_line(c, line, sizeof line)) < 0)
			return -1;
		if (n)
			return conn_error(c, "chunk longer than its size");
	}
	for (count = 0; (n = conn_line(c, line, sizeof line)) != 0; count++) {
		if (n < 0)
			return -1;
		if (count == MAX_HEADERS)
			return conn_error(c, "too many trailer lines");
	}
	return 0;
}

/* A body that ends when the server closes the connection: 0, or -1 with why. */
static int read_to_close(struct conn *c, struct buf *body)
{
	int r;
	while ((r = conn_fill(c, NULL)) > 0) {
		size_t k = c->inlen - c->inpos;
		if (k > MAX_BODY - body->len)
			return conn_error(c, TOO_LARGE);
		buf_add(body, c->in + c->inpos, k);
		c->inpos = c->inlen;
	}
	return r;
}

/* Reads one whole response: 0, or -1 with c->why. */
static int read_response(struct conn *c, struct resp *r, int head)
{
	long clen = -1;         /* none yet */
	int chunked = 0;
	r->body.len = 0;
	buf_add(&r->body, "", 0);       /* an empty body still gives a string */
	r->nonce[0] = r->location[0] = r->retry_after[0] = r->terms[0] = r->date[0] = 0;
	if (read_head(c, r, &clen, &chunked))
		return -1;
	if (head || r->status == 204 || r->status == 304)
		return 0;
	if (chunked)
		return read_chunked(c, &r->body);
	if (clen > MAX_BODY)
		return conn_error(c, TOO_LARGE);
	if (clen >= 0)
		return conn_take(c, &r->body, (size_t)clen);
	r->close = 1;
	return read_to_close(c, &r->body);
}

/* ---- requests ---- */

/*
 * 1 if bytes wait on the kept connection c before we ask anything (a response nobody asked for,
 * or the server's end), else 0: then it is not reused, or they would answer our next request.
 * (Bytes left in BearSSL's buffer make our send fail: the request goes on a new connection.)
 */
static int conn_stale(struct conn *c)
{
	struct pollfd p = { c->fd, POLLIN, 0 };
	return poll(&p, 1, 0) != 0;
}

/* Sends one request, with body as JOSE JSON if there is one: 0, or -1 with why. */
static int send_request(struct conn *c, const char *method, const struct url *u,
			const struct buf *body)
{
	struct buf req = { 0 };
	char len[32];
	int v6 = strchr(u->host, ':') != NULL, port = strcmp(u->port, u->https ? "443" : "80");
	int r;
	buf_cat(&req, method, " ", u->path, " HTTP/1.1\r\nHost: ", v6 ? "[" : "", u->host,
		v6 ? "]" : "", port ? ":" : "", port ? u->port : "",
		"\r\nUser-Agent: " USER_AGENT "\r\n", body ? "" : "\r\n", NULL);
	if (body) {
		snprintf(len, sizeof len, "%zu", body->len);
		buf_cat(&req, "Content-Type: application/jose+json\r\nContent-Length: ", len,
			"\r\n\r\n", NULL);
		buf_add(&req, body->p, body->len);
	}
	r = conn_write(c, req.p, req.len);
	buf_free(&req);
	return r;
}

/*
 * One HTTP exchange on c, within --timeout and before give_up (if not 0), reusing c's connection
 * to the same host and port; if that turns out closed before any answer (no byte of one, nor a
 * TLS record but close_notify), the request goes once more on a new one. NULL, or why it failed.
 */
static const char *http_try(struct conn *c, const char *method, const char *url,
			    const struct buf *body, struct resp *r, long long give_up)
{
	struct url u;
	int attempt;
	if (url_parse(url, &u))
		return "malformed URL";
	if (u.https != (c->tls != NULL))
		return c->tls ? "not an https URL" : "not an http URL";
	c->deadline = now_ms() + run.timeout * 1000LL;      /* for a connection kept alive */
	if (give_up && give_up < c->deadline)
		c->deadline = give_up;
	for (attempt = 0; attempt < 2; attempt++) {
		int reused = c->fd >= 0 && !strcmp(c->host, u.host) && !strcmp(c->port, u.port) &&
			     !conn_stale(c);
		if (!reused) {  /* conn_open says why if it fails */
			conn_close(c);
			if (conn_open(c, &u, give_up))
				break;
		}
		c->got = c->raw = 0;
		c->why = NULL;
		stats.requests++;
		if (!send_request(c, method, &u, body) &&
		    !read_response(c, r, !strcmp(method, "HEAD"))) {
			if (r->close || c->inpos < c->inlen)
				conn_close(c);
			return NULL;
		}
		conn_close(c);
		if (!reused || c->got || now_ms() >= c->deadline || (c->raw && c->tls &&
		    br_ssl_engine_last_error(&c->tls->sc.eng) != BR_ERR_OK))
			break;  /* resent only if closed with nothing (but close_notify), in time */
	}
	return c->why ? c->why : "failed";
}

/* One HTTP exchange, as http_try, that must succeed (whatever its status). */
static void xhttp(struct conn *c, const char *method, const char *url, const struct buf *body,
		  struct resp *r, const char *step, long long give_up)
{
	const char *err = http_try(c, method, url, body, r, give_up);
	if (err)
		fail("%s: %s %s: %s", step, method, url, err);
}

/* ======== 6. JWS and CSRs: what we sign ================================================= */

/* Signs data: RSASSA-PKCS1-v1_5, or ECDSA r||s (JWS, RFC 7518 3.4) or DER (asn1): length or 0. */
static size_t key_sign(const struct key *k, const void *data, size_t len, unsigned char *sig,
		       int asn1)
{
	const br_hash_class *hash = k->type == BR_KEYTYPE_EC && k->ec->curve == BR_EC_secp384r1
				    ? &br_sha384_vtable : &br_sha256_vtable;
	br_hash_compat_context h;
	unsigned char digest[48];
	hash->init(&h.vtable);
	hash->update(&h.vtable, data, len);
	hash->out(&h.vtable, digest);
	if (k->type == BR_KEYTYPE_EC)
		return (asn1 ? br_ecdsa_sign_asn1_get_default() : br_ecdsa_sign_raw_get_default())
		       (&ec_nist, hash, digest, k->ec, sig);
	return br_rsa_pkcs1_sign_get_default()(BR_HASH_OID_SHA256, digest, 32, k->rsa, sig)
	       ? (k->rsa->n_bitlen + 7) / 8 : 0;
}

/*
 * A request to the CA, a flattened JWS (RFC 8555 6.2) into out, signed with k: as "kid" once the
 * account exists, else as "jwk". payload NULL: POST-as-GET; nonce NULL: none (7.3.5's inner JWS).
 * With mac, External Account Binding's JWS (7.3.4): MACed with it under --eab-alg.
 */
static void xjws_build(struct buf *out, const struct key *k, const char *kid, const char *nonce,
		       const char *url, const char *payload, const struct buf *mac)
{
	struct buf prot = { 0 }, input = { 0 };
	unsigned char sig[512];
	size_t siglen;
	br_hmac_key_context kc;
	br_hmac_context hc;
	const br_hash_class *hash;
	buf_cat(&prot, "{\"alg\":\"", mac ? run.eab_alg : k->alg, "\"", NULL);
	if (kid)
		buf_json_str(&prot, ",\"kid\":", kid);
	else
		buf_cat(&prot, ",\"jwk\":", k->jwk, NULL);
	if (nonce)
		buf_json_str(&prot, ",\"nonce\":", nonce);
	buf_json_str(&prot, ",\"url\":", url);
	buf_str(&prot, "}");
	buf_b64url(&input, prot.p, prot.len);
	buf_str(&input, ".");
	if (payload)
		buf_b64url(&input, payload, strlen(payload));
	if (!mac) {
		siglen = key_sign(k, input.p, input.len, sig, 0);
	} else {        /* --eab-alg: HS256, HS384 or HS512 (RFC 7518 3.2) */
		hash = !strcmp(run.eab_alg, "HS512") ? &br_sha512_vtable :
		       !strcmp(run.eab_alg, "HS384") ? &br_sha384_vtable : &br_sha256_vtable;
		br_hmac_key_init(&kc, hash, mac->p, mac->len);
		br_hmac_init(&hc, &kc, 0);
		br_hmac_update(&hc, input.p, input.len);
		siglen = br_hmac_out(&hc, sig);
	}
	if (!siglen)
		fail("signing with the account key failed");
	out->len = 0;
	buf_str(out, "{\"protected\":\"");
	buf_add(out, input.p, strcspn(input.p, "."));
	buf_cat(out, "\",\"payload\":\"", strchr(input.p, '.') + 1, "\",\"signature\":\"", NULL);
	buf_b64url(out, sig, siglen);
	buf_str(out, "\"}");
	buf_free(&prot);
	buf_free(&input);
}

/* ---- a PKCS#10 CSR (RFC 2986) for --domains ---- */

/* Puts a DER header in front of what was written to b since start. */
static void der_wrap(struct buf *b, size_t start, int tag)
{
	unsigned char h[6];
	size_t len = b->len - start, n = 2, k, v;
	h[0] = (unsigned char)tag;
	h[1] = (unsigned char)len;
	if (len >= 0x80) {
		for (v = len; v; v >>= 8)
			n++;
		h[1] = (unsigned char)(0x80 | (n - 2));
		for (k = n, v = len; k > 2; v >>= 8)
			h[--k] = (unsigned char)v;
	}
	buf_add(b, h, n);                 /* room for the header at the end... */
	memmove(b->p + start + n, b->p + start, len);
	memcpy(b->p + start, h, n);       /* ...which then moves to the front */
}

/* Appends a TLV of tag around len bytes of data. */
static void der_add(struct buf *b, int tag, const void *data, size_t len)
{
	size_t start = b->len;
	buf_add(b, data, len);
	der_wrap(b, start, tag);
}

/* A positive INTEGER from big-endian bytes without leading zeros. */
static void der_uint(struct buf *b, const struct der *v)
{
	size_t start = b->len;
	if (v->p[0] & 0x80)
		buf_add(b, "", 1);        /* a 0 byte keeps it positive */
	buf_add(b, v->p, v->len);
	der_wrap(b, start, 0x02);
}

#define OID_CN "\x55\x04\x03"
#define OID_EXT_REQ "\x2A\x86\x48\x86\xF7\x0D\x01\x09\x0E"
#define OID_SAN "\x55\x1D\x11"
#define OID_AKI "\x55\x1D\x23"

#define OID_RSA "\x2A\x86\x48\x86\xF7\x0D\x01\x01\x01"
#define OID_RSA_SHA256 "\x2A\x86\x48\x86\xF7\x0D\x01\x01\x0B"
#define OID_EC_KEY "\x2A\x86\x48\xCE\x3D\x02\x01"
#define OID_P256 "\x2A\x86\x48\xCE\x3D\x03\x01\x07"
#define OID_P384 "\x2B\x81\x04\x00\x22"
#define OID_ECDSA_SHA256 "\x2A\x86\x48\xCE\x3D\x04\x03\x02"
#define OID_ECDSA_SHA384 "\x2A\x86\x48\xCE\x3D\x04\x03\x03"

/* SubjectPublicKeyInfo (RFC 5280 4.1.2.7; RFC 3279, RFC 5480). */
static void der_spki(struct buf *b, const struct key *k)
{
	size_t spki = b->len, bits;
	int p256 = k->type == BR_KEYTYPE_EC && k->ec->curve == BR_EC_secp256r1;
	if (k->type == BR_KEYTYPE_RSA) {
		der_add(b, 0x06, OID_RSA, 9);
		der_add(b, 0x05, "", 0);
	} else {
		der_add(b, 0x06, OID_EC_KEY, 7);
		der_add(b, 0x06, p256 ? OID_P256 : OID_P384, p256 ? 8 : 5);
	}
	der_wrap(b, spki, 0x30);
	bits = b->len;
	buf_add(b, "", 1);                /* BIT STRING: no unused bits */
	if (k->type == BR_KEYTYPE_RSA) {
		der_uint(b, &k->n);
		der_uint(b, &k->e);
		der_wrap(b, bits + 1, 0x30);
	} else {
		buf_add(b, k->q, k->qlen);
	}
	der_wrap(b, bits, 0x03);
	der_wrap(b, spki, 0x30);
}

/* The subject: CN = the first DNS name that fits in 64 bytes, or nothing. */
static void der_subject(struct buf *b, const struct names *ns)
{
	size_t name = b->len;
	int k;
	for (k = 0; k < ns->n; k++)
		if (!strcmp(ns->id[k].type, "dns") && strlen(ns->id[k].value) <= 64) {
			der_add(b, 0x06, OID_CN, 3);
			der_add(b, 0x0C, ns->id[k].value, strlen(ns->id[k].value));
			der_wrap(b, name, 0x30);
			der_wrap(b, name, 0x31);
			break;
		}
	der_wrap(b, name, 0x30);
}

/* attributes [0]: an extensionRequest with one subjectAltName of all names. */
static void der_san_request(struct buf *b, const struct names *ns)
{
	size_t attrs = b->len, ext, names;
	unsigned char ip[16];
	int k;
	der_add(b, 0x06, OID_EXT_REQ, 9);
	ext = b->len;
	der_add(b, 0x06, OID_SAN, 3);
	names = b->len;
	for (k = 0; k < ns->n; k++) {
		const char *v = ns->id[k].value;
		if (!strcmp(ns->id[k].type, "dns"))
			der_add(b, 0x82, v, strlen(v));                          /* dNSName */
		else if (inet_pton(AF_INET, v, ip) == 1)
			der_add(b, 0x87, ip, 4);                                 /* iPAddress */
		else if (inet_pton(AF_INET6, v, ip) == 1)
			der_add(b, 0x87, ip, 16);
	}
	der_wrap(b, names, 0x30);         /* GeneralNames */
	der_wrap(b, names, 0x04);         /* extnValue */
	der_wrap(b, ext, 0x30);           /* Extension */
	der_wrap(b, ext, 0x30);           /* Extensions */
	der_wrap(b, ext, 0x31);           /* the attribute's SET of values */
	der_wrap(b, attrs, 0x30);         /* Attribute */
	der_wrap(b, attrs, 0xA0);
}

/* A CSR for names ns, signed with k (SHA-256, or SHA-384 for P-384). */
static void xcsr_build(struct buf *b, const struct names *ns, const struct key *k)
{
	unsigned char sig[1 + 512] = { 0 };       /* a BIT STRING: no unused bits, the signature */
	size_t start, siglen;
	int rsa = k->type == BR_KEYTYPE_RSA;
	int p256 = !rsa && k->ec->curve == BR_EC_secp256r1;
	b->len = 0;
	der_add(b, 0x02, "", 1);          /* version 0 */
	der_subject(b, ns);
	der_spki(b, k);
	der_san_request(b, ns);
	der_wrap(b, 0, 0x30);             /* CertificationRequestInfo */
	if (!(siglen = key_sign(k, b->p, b->len, sig + 1, 1)))
		fail("signing the CSR with the domain key failed");
	start = b->len;
	der_add(b, 0x06, rsa ? OID_RSA_SHA256 : p256 ? OID_ECDSA_SHA256 : OID_ECDSA_SHA384,
		rsa ? 9 : 8);
	if (rsa)
		der_add(b, 0x05, "", 0);  /* NULL parameters */
	der_wrap(b, start, 0x30);         /* signatureAlgorithm */
	der_add(b, 0x03, sig, 1 + siglen);
	der_wrap(b, 0, 0x30);
}

/* ======== 7. Keys and DER =============================================================== */

/*
 * Elliptic curves: BearSSL's fast P-256 code, and its generic code for P-384 and P-521. Its
 * default (br_ec_get_default) adds Curve25519: 4 kB of a router's flash that nothing needs, since
 * every TLS server takes P-256 for the key exchange. The methods pick the code by curve.
 */
static const br_ec_impl *ec_code(int curve)
{
	return curve == BR_EC_secp256r1 ? &br_ec_p256_m31 : &br_ec_prime_i31;
}

/* br_ec_impl's generator: the curve's base point, encoded */
static const unsigned char *ec_generator(int curve, size_t *len)
{
	return ec_code(curve)->generator(curve, len);
}

/* br_ec_impl's order: the curve's order, big-endian */
static const unsigned char *ec_order(int curve, size_t *len)
{
	return ec_code(curve)->order(curve, len);
}

/* br_ec_impl's xoff: where X is in an encoded point */
static size_t ec_xoff(int curve, size_t *len)
{
	return ec_code(curve)->xoff(curve, len);
}

/* br_ec_impl's mul: g times x, in place; 1, or 0 on a bad point */
static uint32_t ec_mul(unsigned char *g, size_t glen, const unsigned char *x, size_t xlen,
		       int curve)
{
	return ec_code(curve)->mul(g, glen, x, xlen, curve);
}

/* br_ec_impl's mulgen: the base point times x into r; its length */
static size_t ec_mulgen(unsigned char *r, const unsigned char *x, size_t xlen, int curve)
{
	return ec_code(curve)->mulgen(r, x, xlen, curve);
}

/* br_ec_impl's muladd: x*A + y*B into A (B NULL: the base point); 1, or 0 */
static uint32_t ec_muladd(unsigned char *a, const unsigned char *b, size_t len,
			  const unsigned char *x, size_t xlen, const unsigned char *y, size_t ylen,
			  int curve)
{
	return ec_code(curve)->muladd(a, b, len, x, xlen, y, ylen, curve);
}

static const br_ec_impl ec_nist = {
	1 << BR_EC_secp256r1 | 1 << BR_EC_secp384r1 | 1 << BR_EC_secp521r1,
	ec_generator, ec_order, ec_xoff, ec_mul, ec_mulgen, ec_muladd
};

/*
 * Decodes the next PEM block (RFC 7468) of in from *pos: its label into label and its bytes
 * into der. Text before a block is skipped (CA bundles have comments); inside one, only base64
 * and line breaks may appear. Returns 1, 0 when there is none, -1 if malformed.
 */
static int pem_next(const struct buf *in, size_t *pos, char *label, size_t cap, struct buf *der)
{
	const char *s = in->p + *pos, *body, *end;
	size_t n;
	for (;; s++) {          /* a block begins at *pos, at a line start or after a file's BOM */
		if (!(s = strstr(s, "-----BEGIN ")))
			return 0;
		if (s == in->p + *pos || s[-1] == '\n' ||
		    (s == in->p + 3 && !memcmp(in->p, "\xEF\xBB\xBF", 3)))   /* Windows' editors */
			break;
	}
	s += strlen("-----BEGIN ");
	n = strcspn(s, "\r\n");
	if (n < 5 || strncmp(s + n - 5, "-----", 5) || copy_str(label, cap, s, n - 5) ||
	    !line_breaks(s + n))        /* a bare CR ends no line for openssl */
		return -1;
	body = s + n;
	if (!(end = strstr(body, "-----END ")) || end[-1] != '\n' ||
	    strncmp(end + 9, label, n - 5) || strncmp(end + 9 + n - 5, "-----", 5))
		return -1;
	der->len = 0;
	if (b64_decode(body, (size_t)(end - body), der))
		return -1;
	*pos = (size_t)(end + 9 + n - in->p);
	return 1;
}

/* Reads into der a PEM file's first object labelled one of labels (NULL-ended), or a DER file. */
static void xload_der(const char *path, const char *what, const char *const *labels,
		     struct buf *der)
{
	struct buf file = { 0 };
	size_t pos = 0, k;
	char name[128], found[128] = "no PEM block";
	int r;
	xread_file(path, what, &file);
	if (!strstr(file.p, "-----BEGIN ")) {
		buf_free(der);
		*der = file;
		return;
	}
	while ((r = pem_next(&file, &pos, name, sizeof name, der)) > 0) {
		for (k = 0; labels[k]; k++)
			if (!strcmp(name, labels[k])) {
				buf_free(&file);
				return;
			}
		if (!strcmp(found, "no PEM block"))
			strcpy(found, name);
	}
	if (r < 0 && strstr(file.p, "Proc-Type: 4,ENCRYPTED"))   /* RFC 1421, as openssl 1.x */
		fail("%s %s: encrypted; acme-tiny takes keys without a passphrase", what, path);
	if (r < 0)
		fail("%s %s: malformed PEM", what, path);
	fail("%s %s: found %s, expected %s", what, path, found, labels[0]);
}

/* ---- DER, only as much as keys, CSRs and certificates need ---- */

/* Takes one TLV off in: its tag, or -1. We read only one-byte tags and definite lengths < 2^24. */
static int der_next(struct der *in, struct der *val)
{
	size_t len, hdr = 2, k;
	int tag;
	if (in->len < 2)
		return -1;
	tag = in->p[0];
	len = in->p[1];
	if ((tag & 0x1F) == 0x1F || len == 0x80 || len > 0x83)
		return -1;
	if (len > 0x80) {
		hdr += len - 0x80;
		if (in->len < hdr)
			return -1;
		for (len = 0, k = 2; k < hdr; k++)
			len = len << 8 | in->p[k];
	}
	if (len > in->len - hdr)
		return -1;
	val->p = in->p + hdr;
	val->len = len;
	in->p += hdr + len;
	in->len -= hdr + len;
	return tag;
}

/* Takes one TLV of this tag off the front of in into val: 0, or -1. */
static int der_expect(struct der *in, int tag, struct der *val)
{
	return der_next(in, val) == tag ? 0 : -1;
}

/* 1 if v's bytes (an OID's, a key's) are these n bytes, else 0. */
static int der_is(const struct der *v, const void *bytes, size_t n)
{
	return v->len == n && !memcmp(v->p, bytes, n);
}

/* Sets k->jwk, the public key as an RFC 7638 JWK (members in order), and its thumbprint. */
static void key_jwk(struct key *k)
{
	unsigned char d[32];
	struct buf b = { 0 };
	size_t half = (k->qlen - 1) / 2;        /* an EC point is 04 || x || y */
	if (k->type == BR_KEYTYPE_RSA) {
		buf_str(&b, "{\"e\":\"");
		buf_b64url(&b, k->e.p, k->e.len);
		buf_str(&b, "\",\"kty\":\"RSA\",\"n\":\"");
		buf_b64url(&b, k->n.p, k->n.len);
	} else {
		buf_cat(&b, "{\"crv\":\"", k->ec->curve == BR_EC_secp256r1 ? "P-256" : "P-384",
			"\",\"kty\":\"EC\",\"x\":\"", NULL);
		buf_b64url(&b, k->q + 1, half);
		buf_str(&b, "\",\"y\":\"");
		buf_b64url(&b, k->q + 1 + half, half);
	}
	buf_str(&b, "\"}");
	copy_str(k->jwk, sizeof k->jwk, b.p, b.len);    /* fits: n has at most 512 bytes */
	sha256(b.p, b.len, d);
	b.len = 0;
	buf_b64url(&b, d, sizeof d);
	copy_str(k->thumbprint, sizeof k->thumbprint, b.p, b.len);
	buf_free(&b);
}

/*
 * RSA n and e from the key's DER (PKCS#1 RSAPrivateKey, maybe inside PKCS#8): 0, or -1.
 * BearSSL's decoder drops them, and 0.6's helpers that recompute them fail on 4096-bit keys
 * and on some 2048-bit ones.
 */
static int rsa_public_from_der(const void *der, size_t len, struct der *n, struct der *e)
{
	struct der in = { der, len }, key, v, octets;
	if (der_expect(&in, 0x30, &key) || der_expect(&key, 0x02, &v) ||
	    (key.len && key.p[0] == 0x30 &&          /* PKCS#8: PKCS#1 in an OCTET STRING */
	     (der_expect(&key, 0x30, &v) || der_expect(&key, 0x04, &octets) ||
	      der_expect(&octets, 0x30, &key) || der_expect(&key, 0x02, &v))) ||
	    der_expect(&key, 0x02, n) || der_expect(&key, 0x02, e))
		return -1;
	while (n->len > 1 && !n->p[0])
		n->p++, n->len--;
	while (e->len > 1 && !e->p[0])
		e->p++, e->len--;
	return 0;
}

/*
 * Decodes a DER private key (PKCS#1, SEC1 or PKCS#8); NULL, or what is
 * wrong. The RSA public key points into der, which must outlive k.
 */
static const char *key_from_der(struct key *k, const void *der, size_t len)
{
	memset(k, 0, sizeof *k);
	br_skey_decoder_init(&k->dc);
	br_skey_decoder_push(&k->dc, der, len);
	if (br_skey_decoder_last_error(&k->dc))
		return "not an RSA or EC private key";
	k->type = br_skey_decoder_key_type(&k->dc);
	if (k->type == BR_KEYTYPE_RSA) {
		k->rsa = br_skey_decoder_get_rsa(&k->dc);
		if (k->rsa->n_bitlen < 2048 || k->rsa->n_bitlen > 4096)
			return "RSA key must have 2048 to 4096 bits";
		if (rsa_public_from_der(der, len, &k->n, &k->e) ||
		    k->n.len != (k->rsa->n_bitlen + 7) / 8 || k->e.len > 4)
			return "malformed RSA key";
		k->alg = "RS256";
	} else {
		k->ec = br_skey_decoder_get_ec(&k->dc);
		if (k->ec->curve != BR_EC_secp256r1 && k->ec->curve != BR_EC_secp384r1)
			return "EC key must be on P-256 or P-384";
		if (!(k->qlen = br_ec_compute_pub(&ec_nist, NULL, k->q, k->ec)))
			return "cannot compute the EC public key";
		k->alg = k->ec->curve == BR_EC_secp256r1 ? "ES256" : "ES384";
	}
	key_jwk(k);
	return NULL;
}

/* Loads a key file into k; der keeps the file's key bytes for k. */
static void xload_key(const char *path, const char *what, struct key *k, struct buf *der)
{
	const char *err;
	xload_der(path, what, KEY_LABELS, der);
	if ((err = key_from_der(k, der->p, der->len)))
		fail("%s %s: %s", what, path, err);
}

/* ---- the names of --domains, a CSR or a certificate; what else we read of those ---- */

/* The identifier in ns of this type and value, or NULL if it is not one of ours. */
static const struct ident *our_ident(const struct names *ns, const char *type, const char *value)
{
	int k;
	for (k = 0; k < ns->n; k++)
		if (!strcmp(ns->id[k].type, type) && !strcmp(ns->id[k].value, value))
			return &ns->id[k];
	return NULL;
}

/*
 * Adds a name of a CSR or certificate as its GeneralName tag says: an iPAddress (0x87, 4 or 16
 * bytes) is "ip", a dNSName (0x82) "dns" whatever it reads as; text (0: a CN, --domains) is "ip"
 * if an address. A DNS name is lower-cased, a-z 0-9 - . past any "*.". Duplicates dropped. 0, -1.
 */
static int add_name(struct names *ns, const unsigned char *s, size_t len, int tag)
{
	struct ident id;
	unsigned char ip[16];
	int af = 0;
	if (tag == 0x87) {
		if (len != 4 && len != 16)
			return -1;
		af = len == 4 ? AF_INET : AF_INET6;
		memcpy(ip, s, len);
	} else if (len < 1 || len > MAX_NAME || memchr(s, 0, len)) {
		return -1;
	} else {
		memcpy(id.value, s, len);
		id.value[len] = 0;
		af = tag ? 0 : inet_pton(AF_INET, id.value, ip) == 1 ? AF_INET :
		     inet_pton(AF_INET6, id.value, ip) == 1 ? AF_INET6 : 0;
	}
	strcpy(id.type, af ? "ip" : "dns");
	if (af) {
		inet_ntop(af, ip, id.value, sizeof id.value);
	} else {
		/* '*' only as a whole first label: the code for wildcards skips a leading "*." */
		const char *rest = id.value + (strncmp(id.value, "*.", 2) ? 0 : 2);
		lower_case(id.value);
		if (!*rest || rest[strspn(rest, "abcdefghijklmnopqrstuvwxyz0123456789-.")])
			return -1;
	}
	if (our_ident(ns, id.type, id.value))
		return 0;
	if (ns->n == MAX_NAMES)
		return -1;
	ns->id[ns->n++] = id;
	return 0;
}

/* The names of --domains: a comma-separated list of DNS names and IP addresses. 0, or -1. */
static int names_from_list(const char *list, struct names *ns)
{
	ns->n = 0;
	for (;;) {
		size_t len = strcspn(list, ",");
		if (add_name(ns, (const unsigned char *)list, len, 0))
			return -1;
		if (!list[len])
			return 0;
		list += len + 1;
	}
}

/* The subject's commonName values (Name: SEQUENCE OF SET OF {OID, value}) into ns: 0, or -1. */
static int subject_names(struct der subject, struct names *ns)
{
	struct der rdn, atv, oid, val;
	while (subject.len) {
		if (der_expect(&subject, 0x31, &rdn))
			return -1;
		while (rdn.len)
			if (der_expect(&rdn, 0x30, &atv) || der_expect(&atv, 0x06, &oid) ||
			    der_next(&atv, &val) < 0 ||
			    (der_is(&oid, OID_CN, 3) && add_name(ns, val.p, val.len, 0)))
				return -1;
	}
	return 0;
}

/* dNSName [2] and iPAddress [7] of a subjectAltName extension value into ns: 0, or -1. */
static int san_names(struct der octets, struct names *ns)
{
	struct der seq, gn;
	int tag;
	if (der_expect(&octets, 0x30, &seq) || octets.len)
		return -1;
	while (seq.len)
		if ((tag = der_next(&seq, &gn)) < 0 ||
		    ((tag == 0x82 || tag == 0x87) && add_name(ns, gn.p, gn.len, tag)))
			return -1;
	return 0;
}

/*
 * Extensions (RFC 5280 4.1.2.9): the subjectAltName names into ns, and the Authority Key
 * Identifier's keyIdentifier into aki, each if not NULL. 0, or -1 if malformed.
 */
static int extensions(struct der exts, struct names *ns, struct der *aki)
{
	struct der ext, oid, val, seq;
	while (exts.len)
		if (der_expect(&exts, 0x30, &ext) || der_expect(&ext, 0x06, &oid) ||
		    (ext.len && ext.p[0] == 0x01 && der_expect(&ext, 0x01, &val)) ||  /* critical */
		    der_expect(&ext, 0x04, &val) ||
		    (ns && der_is(&oid, OID_SAN, 3) && san_names(val, ns)) ||
		    (aki && der_is(&oid, OID_AKI, 3) && (der_expect(&val, 0x30, &seq) ||
		     (seq.len && seq.p[0] == 0x80 && der_next(&seq, aki) < 0))))  /* [0] optional */
			return -1;
	return 0;
}

/* The extensionRequest attribute of a CSR: the names of its subjectAltName. 0, or -1. */
static int attribute_names(struct der attrs, struct names *ns)
{
	struct der attr, oid, set, exts;
	while (attrs.len)
		if (der_expect(&attrs, 0x30, &attr) || der_expect(&attr, 0x06, &oid) ||
		    der_expect(&attr, 0x31, &set) || (der_is(&oid, OID_EXT_REQ, 9) &&
		    (der_expect(&set, 0x30, &exts) || extensions(exts, ns, NULL))))
			return -1;
	return 0;
}

/* The names a CSR (RFC 2986) asks for, CN and subjectAltName: 0, or -1 if malformed or none. */
static int csr_names(const unsigned char *p, size_t len, struct names *ns)
{
	struct der in = { p, len }, csr, info, subject, v;
	ns->n = 0;
	return der_expect(&in, 0x30, &csr) || in.len || der_expect(&csr, 0x30, &info) ||
	       der_expect(&info, 0x02, &v) || der_expect(&info, 0x30, &subject) ||
	       der_expect(&info, 0x30, &v) || subject_names(subject, ns) ||
	       (info.len && (der_expect(&info, 0xA0, &v) || info.len || attribute_names(v, ns))) ||
	       !ns->n ? -1 : 0;
}

/* Seconds since 1970 of a UTCTime or GeneralizedTime (RFC 5280 4.1.2.5) taken off in; or -1. */
static long long der_time(struct der *in)
{
	struct der v = { 0 };    /* der_next leaves it unset on malformed input */
	int tag = der_next(in, &v);
	size_t n = tag == 0x17 ? 2 : 4;         /* digits of the year */
	const char *s = (const char *)v.p;
	long long y;
	if ((tag != 0x17 && tag != 0x18) || v.len != n + 11 || s[n + 10] != 'Z' ||
	    (y = number(s, (int)n)) < 0)
		return -1;
	if (n == 2)
		y += y < 50 ? 2000 : 1900;
	return civil_time(y, number(s + n, 2), number(s + n + 2, 2), number(s + n + 4, 2),
			  number(s + n + 6, 2), number(s + n + 8, 2));
}

/* A certificate (RFC 5280 4.1) into c, its subjectAltName names into ns if not NULL: 0 or -1. */
static int cert_parse(const void *der, size_t len, struct cert *c, struct names *ns)
{
	struct der in = { der, len }, cert, tbs, v, validity, spki;
	int tag;
	memset(c, 0, sizeof *c);
	if (ns)
		ns->n = 0;
	if (der_expect(&in, 0x30, &cert) || der_expect(&cert, 0x30, &tbs) ||
	    (tbs.len && tbs.p[0] == 0xA0 && der_next(&tbs, &v) < 0) ||      /* version */
	    der_expect(&tbs, 0x02, &c->serial) || der_next(&tbs, &v) < 0 ||  /* signature */
	    der_next(&tbs, &v) < 0 || der_expect(&tbs, 0x30, &validity) ||  /* issuer */
	    (c->not_before = der_time(&validity)) < 0 || (c->not_after = der_time(&validity)) < 0 ||
	    der_next(&tbs, &v) < 0 || der_expect(&tbs, 0x30, &spki) ||      /* subject */
	    der_next(&spki, &v) < 0 || der_expect(&spki, 0x03, &c->key))
		return -1;
	while (tbs.len)         /* the unique IDs [1] [2], and the extensions [3] */
		if ((tag = der_next(&tbs, &v)) < 0 ||
		    (tag == 0xA3 && (der_expect(&v, 0x30, &validity) ||
				     extensions(validity, ns, &c->aki))))
			return -1;
	return 0;
}

/* The public key bits (subjectPublicKey) of a CSR, which a CA copies into a certificate, or -1. */
static int csr_key(const void *der, size_t len, struct der *key)
{
	struct der in = { der, len }, outer, info, spki, v;
	return der_expect(&in, 0x30, &outer) || der_expect(&outer, 0x30, &info) ||
	       der_next(&info, &v) < 0 || der_next(&info, &v) < 0 ||    /* version, subject */
	       der_expect(&info, 0x30, &spki) || der_next(&spki, &v) < 0 ||
	       der_expect(&spki, 0x03, key) ? -1 : 0;
}

/* ---- new keys, for machines without openssl ---- */

/* Makes a new private key of type t in path: PKCS#8 PEM, mode 0600. */
static void xgenerate_key(const char *path, const struct key_type *t)
{
	static unsigned char priv[BR_RSA_KBUF_PRIV_SIZE(4096)], pub[BR_RSA_KBUF_PUB_SIZE(4096)];
	static unsigned char d[512], der[4096], pem[6144];
	br_prng_seeder seeder = br_prng_seeder_system(NULL);
	br_hmac_drbg_context rng;
	size_t len;
	br_hmac_drbg_init(&rng, &br_sha256_vtable, NULL, 0);
	if (!seeder || !seeder(&rng.vtable))
		fail("no system random source to make a key with");
	if (t->curve) {
		br_ec_private_key sk;
		br_ec_public_key pk;
		if (!br_ec_keygen(&rng.vtable, &ec_nist, &sk, priv, t->curve) ||
		    !br_ec_compute_pub(&ec_nist, &pk, pub, &sk))
			fail("EC key generation failed");
		len = br_encode_ec_pkcs8_der(der, &sk, &pk);
	} else {
		br_rsa_private_key sk;
		br_rsa_public_key pk;
		size_t dlen;
		if (!br_rsa_keygen_get_default()(&rng.vtable, &sk, priv, &pk, pub, t->bits,
						 65537) ||
		    !(dlen = br_rsa_compute_privexp_get_default()(d, &sk, 65537)))
			fail("RSA key generation failed");
		len = br_encode_rsa_pkcs8_der(der, &sk, &pk, d, dlen);
	}
	len = br_pem_encode(pem, der, len, "PRIVATE KEY", BR_PEM_LINE64);
	xwrite_file(path, pem, len, 0);
	memset(priv, 0, sizeof priv);
	memset(d, 0, sizeof d);
	memset(der, 0, sizeof der);
	memset(pem, 0, sizeof pem);
}

/* ======== 8. JSON ======================================================================= */

/* Adds a token for the bytes from start to end; its index, or -1 if too many. */
static int json_add(struct json *j, int type, size_t start, size_t end)
{
	if (j->n == j->cap) {
		int cap = j->cap ? j->cap * 2 : 64;
		struct jtok *t;
		if (j->n >= MAX_TOKENS)
			return -1;
		if (!(t = realloc(j->t, (size_t)cap * sizeof *t)))
			fail("out of memory");
		j->t = t;
		j->cap = cap;
	}
	j->t[j->n] = (struct jtok){ .type = type, .start = (int)start, .end = (int)end,
				    .next = j->n + 1 };
	return j->n++;
}

/* Frees j's tokens. */
static void json_free(struct json *j)
{
	free(j->t);
	memset(j, 0, sizeof *j);
}

/* Reads the 4 hex digits of a \u escape; -1 if they are not. */
static long hex4(const char *s)
{
	long v = 0;
	int k;
	for (k = 0; k < 4 && v >= 0; k++)
		v = hex_digit(s[k]) < 0 ? -1 : v * 16 + hex_digit(s[k]);
	return v;
}

/* Encodes code point u as UTF-8 into o; the length. */
static size_t utf8_put(unsigned char *o, long u)
{
	static const unsigned char lead[] = { 0, 0, 0xC0, 0xE0, 0xF0 };
	size_t n = u < 0x80 ? 1 : u < 0x800 ? 2 : u < 0x10000 ? 3 : 4, k;
	for (k = n - 1; k > 0; k--, u >>= 6)
		o[k] = (unsigned char)(0x80 | (u & 63));
	o[0] = (unsigned char)(lead[n] | u);
	return n;
}

/* Decodes one \uXXXX escape (and its low surrogate) at s; its length or 0. */
static size_t unicode_escape(const char *s, size_t n, long *u)
{
	long lo;
	if (n < 6 || (*u = hex4(s + 2)) < 0 || *u == 0 || (*u >= 0xDC00 && *u <= 0xDFFF))
		return 0;
	if (*u < 0xD800 || *u > 0xDBFF)
		return 6;
	if (n < 12 || s[6] != '\\' || s[7] != 'u' || (lo = hex4(s + 8)) < 0xDC00 || lo > 0xDFFF)
		return 0;
	*u = 0x10000 + ((*u - 0xD800) << 10) + (lo - 0xDC00);
	return 12;
}

/* Length of one valid UTF-8 sequence at p (RFC 3629), or 0. */
static size_t utf8_seq(const unsigned char *p, size_t n)
{
	unsigned lo = p[0] == 0xE0 ? 0xA0 : p[0] == 0xF0 ? 0x90 : 0x80;
	unsigned hi = p[0] == 0xED ? 0x9F : p[0] == 0xF4 ? 0x8F : 0xBF;
	size_t len = p[0] < 0xC2 ? 0 : p[0] < 0xE0 ? 2 : p[0] < 0xF0 ? 3 : p[0] < 0xF5 ? 4 : 0;
	size_t k;
	if (p[0] < 0x80)
		return 1;
	if (!len || n < len || p[1] < lo || p[1] > hi)
		return 0;
	for (k = 2; k < len; k++)
		if ((p[k] & 0xC0) != 0x80)
			return 0;
	return len;
}

/*
 * Decodes the inside of a JSON string into out (cap bytes with the NUL), or only checks it
 * when out is NULL. Returns the length, or -1 when it is invalid, holds a NUL, or does not fit.
 */
static long json_unescape(const char *s, size_t n, char *out, size_t cap)
{
	static const char esc[] = "\"\"\\\\//b\bf\fn\nr\rt\t";
	size_t i = 0, o = 0;
	if (out && !cap)
		return -1;
	while (i < n) {
		unsigned char tmp[4];
		const unsigned char *src = tmp;
		size_t len = 0, used;
		long u;
		if (s[i] == '\\' && i + 1 < n && s[i + 1] == 'u') {
			if (!(used = unicode_escape(s + i, n - i, &u)))
				return -1;
			len = utf8_put(tmp, u);
		} else if (s[i] == '\\') {
			const char *e = i + 1 < n && s[i + 1] ? strchr(esc, s[i + 1]) : NULL;
			if (!e || (e - esc) % 2)
				return -1;
			tmp[0] = (unsigned char)e[1];
			len = 1;
			used = 2;
		} else {
			src = (const unsigned char *)s + i;
			if ((unsigned char)s[i] < 0x20 || !(len = used = utf8_seq(src, n - i)))
				return -1;
		}
		if (out) {
			if (o + len >= cap)
				return -1;
			memcpy(out + o, src, len);
		}
		o += len;
		i += used;
	}
	if (out)
		out[o] = 0;
	return (long)o;
}

/* Moves *i past JSON white space. */
static void skip_ws(const struct json *j, size_t *i)
{
	while (*i < j->len && j->s[*i] && strchr(" \t\n\r", j->s[*i]))
		++*i;
}

static int jp_value(struct json *j, size_t *i, int depth);

/* A string at *i (its quote): its token, or -1 if it is not strictly JSON. */
static int jp_string(struct json *j, size_t *i)
{
	size_t start = ++*i;
	while (*i < j->len && j->s[*i] != '"')
		*i += j->s[*i] == '\\' ? 2 : 1;
	if (*i >= j->len || json_unescape(j->s + start, *i - start, NULL, 0) < 0)
		return -1;
	return json_add(j, J_STR, start, (*i)++);
}

/* How many decimal digits stand at i. */
static size_t digits(const struct json *j, size_t i)
{
	size_t k = i;
	while (k < j->len && j->s[k] >= '0' && j->s[k] <= '9')
		k++;
	return k - i;
}

/* A number, -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?: its token, or -1. */
static int jp_number(struct json *j, size_t *i)
{
	size_t start = *i, n;
	if (j->s[*i] == '-')
		++*i;
	if (!(n = digits(j, *i)) || (j->s[*i] == '0' && n > 1))
		return -1;
	*i += n;
	if (*i < j->len && j->s[*i] == '.') {
		if (!(n = digits(j, ++*i)))
			return -1;
		*i += n;
	}
	if (*i < j->len && (j->s[*i] == 'e' || j->s[*i] == 'E')) {
		++*i;
		if (*i < j->len && (j->s[*i] == '+' || j->s[*i] == '-'))
			++*i;
		if (!(n = digits(j, *i)))
			return -1;
		*i += n;
	}
	return json_add(j, J_NUM, start, *i);
}

/* An object or array; for objects, keys and values alternate as tokens. Its token, or -1. */
static int jp_container(struct json *j, size_t *i, int depth)
{
	char close = j->s[*i] == '{' ? '}' : ']';
	int self = json_add(j, close == '}' ? J_OBJ : J_ARR, *i, *i);
	if (self < 0 || depth >= MAX_DEPTH)
		return -1;
	++*i;
	skip_ws(j, i);
	if (*i >= j->len || j->s[*i] != close) {       /* not empty */
		for (;;) {
			if (close == '}') {
				skip_ws(j, i);
				if (*i >= j->len || j->s[*i] != '"' || jp_string(j, i) < 0)
					return -1;
				skip_ws(j, i);
				if (*i >= j->len || j->s[(*i)++] != ':')
					return -1;
			}
			if (jp_value(j, i, depth + 1) < 0)
				return -1;
			skip_ws(j, i);
			if (*i >= j->len)
				return -1;
			if (j->s[*i] == close)
				break;
			if (j->s[(*i)++] != ',')
				return -1;
		}
	}
	++*i;                   /* past the close */
	j->t[self].end = (int)*i;
	j->t[self].next = j->n;
	return self;
}

/* Any JSON value at *i: its token, or -1 if it is not strictly JSON. */
static int jp_value(struct json *j, size_t *i, int depth)
{
	static const char *const lit[] = { "true", "false", "null" };
	size_t k;
	skip_ws(j, i);
	if (*i >= j->len)
		return -1;
	if (j->s[*i] == '{' || j->s[*i] == '[')
		return jp_container(j, i, depth);
	if (j->s[*i] == '"')
		return jp_string(j, i);
	if (j->s[*i] == '-' || (j->s[*i] >= '0' && j->s[*i] <= '9'))
		return jp_number(j, i);
	for (k = 0; k < 3; k++) {
		size_t n = strlen(lit[k]);
		if (j->len - *i >= n && !memcmp(j->s + *i, lit[k], n)) {
			*i += n;
			return json_add(j, J_TRUE + (int)k, *i - n, *i);
		}
	}
	return -1;
}

/* Parses one JSON document of len bytes; 0, or -1 if it is not strictly JSON. */
static int json_parse(struct json *j, const char *s, size_t len)
{
	size_t i = 0;
	j->s = s;
	j->len = len;
	j->n = 0;
	if (len > MAX_BODY || jp_value(j, &i, 0) < 0)
		return -1;
	skip_ws(j, &i);
	return i == len ? 0 : -1;
}

/* Decodes string token t into out; 0, or -1 if it is no string or too long. */
static int json_str(const struct json *j, int t, char *out, size_t cap)
{
	if (t < 0 || j->t[t].type != J_STR ||
	    json_unescape(j->s + j->t[t].start, (size_t)(j->t[t].end - j->t[t].start), out,
			  cap) < 0) {
		if (cap)
			out[0] = 0;     /* no half-decoded text for the caller */
		return -1;
	}
	return 0;
}

/* The value of key in object obj; -1 if absent, duplicated, or obj is no object. */
static int json_get(const struct json *j, int obj, const char *key)
{
	int k, found = -1;
	if (obj < 0 || j->t[obj].type != J_OBJ)
		return -1;
	for (k = obj + 1; k < j->t[obj].next; k = j->t[k + 1].next) {
		char name[64];
		if (json_str(j, k, name, sizeof name) == 0 && !strcmp(name, key)) {
			if (found >= 0)
				return -1;
			found = k + 1;
		}
	}
	return found;
}

/* The element of array list after element k (-1: its first); -1 past its last, or if no array. */
static int json_item(const struct json *j, int list, int k)
{
	int next = k < 0 ? list + 1 : j->t[k].next;
	return list >= 0 && j->t[list].type == J_ARR && next < j->t[list].next ? next : -1;
}

/* The string value of key in obj, decoded into out; out, or NULL. */
static const char *json_get_str(const struct json *j, int obj, const char *key,
				char *out, size_t cap)
{
	return json_str(j, json_get(j, obj, key), out, cap) ? NULL : out;
}

/* Appends before, then s as a JSON string, quoted and escaped. */
static void buf_json_str(struct buf *b, const char *before, const char *s)
{
	buf_cat(b, before, "\"", NULL);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		char esc[8];
		snprintf(esc, sizeof esc, c < 0x20 || c == 0x7F ? "\\u%04x" :
			 c == '"' || c == '\\' ? "\\%c" : "%c", c);
		buf_str(b, esc);
	}
	buf_str(b, "\"");
}

/* ======== 9. Bytes, files, time and messages ============================================ */

/* Appends n bytes of data to b; running out of memory ends the run. */
static void buf_add(struct buf *b, const void *data, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		char *p;
		while (cap < b->len + n + 1)
			cap *= 2;
		if (!(p = realloc(b->p, cap)))
			fail("out of memory");
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, data, n);
	b->len += n;
	b->p[b->len] = 0;
}

/* buf_add in the shape of BearSSL's output callbacks */
static void buf_append(void *b, const void *data, size_t n)
{
	buf_add(b, data, n);
}

/* Appends the string s to b. */
static void buf_str(struct buf *b, const char *s)
{
	buf_add(b, s, strlen(s));
}

/* Appends each string up to the NULL that ends the list. */
static __attribute__((sentinel)) void buf_cat(struct buf *b, ...)
{
	const char *s;
	va_list ap;
	va_start(ap, b);
	while ((s = va_arg(ap, const char *)))
		buf_str(b, s);
	va_end(ap);
}

/* Frees b and empties it. */
static void buf_free(struct buf *b)
{
	free(b->p);
	memset(b, 0, sizeof *b);
}

static const char B64URL[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
/* Appends base64url without padding (RFC 7515, appendix C). */
static void buf_b64url(struct buf *b, const void *data, size_t n)
{
	const unsigned char *p = data;
	size_t i;
	for (i = 0; i < n; i += 3) {
		size_t left = n - i, k;
		uint32_t v = (uint32_t)p[i] << 16 | (left > 1 ? (uint32_t)p[i + 1] << 8 : 0) |
			     (left > 2 ? p[i + 2] : 0);
		char q[4];
		for (k = 0; k < 4; k++)
			q[k] = B64URL[(v >> (18 - 6 * k)) & 63];
		buf_add(b, q, left >= 3 ? 4 : left + 1);
	}
}

/* The SHA-256 of n bytes at p into out. */
static void sha256(const void *p, size_t n, unsigned char out[32])
{
	br_sha256_context h;
	br_sha256_init(&h);
	br_sha256_update(&h, p, n);
	br_sha256_out(&h, out);
}

/* The value of a base64 character (RFC 4648, section 4), or -1; by ranges: the CA bundle is big. */
static int b64_value(int c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	return c == '+' ? 62 : c == '/' ? 63 : -1;
}

/*
 * Appends the bytes of base64 text (s, n) to out. Line breaks may come anywhere but one after
 * another (a blank line, which openssl refuses); padding must make whole groups of four and
 * end the text. Returns 0, or -1 for anything else.
 */
static int b64_decode(const char *s, size_t n, struct buf *out)
{
	uint32_t acc = 0;
	size_t i, chars = 0, pad = 0;
	int blank = 0;          /* nothing yet on the line that a '\n' would end */
	for (i = 0; i < n; i++) {
		int v = b64_value((unsigned char)s[i]);
		if (s[i] == '\n' && blank)
			return -1;
		if (s[i] == '\r' || s[i] == '\n') {
			blank = s[i] == '\n' || blank;
			continue;
		}
		blank = 0;
		if (s[i] == '=' && pad < 2 && chars % 4 >= 2)
			pad++;
		else if (v >= 0 && !pad)
			chars++;
		else
			return -1;
		acc = acc << 6 | (uint32_t)(v < 0 ? 0 : v);     /* '=' counts as zero bits */
		if ((chars + pad) % 4 == 0) {
			unsigned char bytes[3] = { (acc >> 16) & 255, (acc >> 8) & 255, acc & 255 };
			buf_add(out, bytes, 3 - pad);
		}
	}
	return (chars + pad) % 4 ? -1 : 0;
}

/* The bytes of unpadded base64url text s (RFC 4648 5) appended to out: 0, or -1. */
static int b64_decode_url(const char *s, struct buf *out)
{
	struct buf std = { 0 };
	int r;
	for (; *s; s++)         /* to base64's alphabet; the rest, '+' and '/' too, invalid */
		buf_add(&std, !strchr(B64URL, *s) ? "!" : *s == '-' ? "+" : *s == '_' ? "/" : s, 1);
	buf_add(&std, "===", (4 - std.len % 4) % 4);
	r = b64_decode(std.p, std.len, out);
	buf_free(&std);
	return r;
}

/* True for 1 to max characters, all of the base64url alphabet. */
static int is_b64url(const char *s, size_t max)
{
	size_t n = strlen(s);
	return n >= 1 && n <= max && strspn(s, B64URL) == n;
}

/* The value of a hexadecimal digit, or -1. */
static int hex_digit(int c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
	     : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* out, holding time t (seconds since 1970) as "2026-03-17 08:13 UTC". */
static const char *date_text(long long t, char *out, size_t cap)
{
	time_t tt = (time_t)t;
	struct tm tm = { 0 };
	gmtime_r(&tt, &tm);     /* not strftime: musl's costs the router binary 12 kB */
	snprintf(out, cap, "%04d-%02d-%02d %02d:%02d UTC", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour, tm.tm_min);
	return out;
}

/* Lower-cases the ASCII letters of s. */
static void lower_case(char *s)
{
	for (; *s; s++)
		if (*s >= 'A' && *s <= 'Z')
			*s = (char)(*s + 32);
}

/* The length of the line breaks at s (LF, after CRs or not; a bare CR is none): 0 if none. */
static size_t line_breaks(const char *s)
{
	size_t n = 0, cr;
	while (s[n + (cr = strspn(s + n, "\r"))] == '\n')
		n += cr + 1;
	return n;
}

/* Copies s into out only if it fits; returns 0 or -1. */
static int copy_str(char *out, size_t cap, const char *s, size_t len)
{
	if (len >= cap)
		return -1;
	memcpy(out, s, len);
	out[len] = 0;
	return 0;
}

/*
 * Reads a whole file of at most MAX_FILE bytes into b; fails the run. A pipe or FIFO (such as
 * <(pass show key)) must end within --timeout: opened without blocking, waited for as a socket.
 */
static void xread_file(const char *path, const char *what, struct buf *b)
{
	struct conn c = { .fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC) };
	char chunk[4096];
	ssize_t n;
	if (c.fd < 0)
		fail("cannot open %s %s: %s", what, path, strerror(errno));
	c.deadline = now_ms() + run.timeout * 1000LL;
	b->len = 0;
	buf_add(b, "", 0);      /* an empty file still gives a string */
	while ((n = sock_wait(&c, POLLIN) ? -1 : read(c.fd, chunk, sizeof chunk)) != 0) {
		if (n < 0 && !c.why && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n < 0 || b->len + (size_t)n > MAX_FILE) {
			close(c.fd);
			fail("cannot read %s %s: %s", what, path, n >= 0 ? "larger than 1 MiB" :
			     c.why ? c.why : strerror(errno));
		}
		buf_add(b, chunk, (size_t)n);
	}
	close(c.fd);
}

/* Writes all of data to fd: 0, or why not (an errno value; EIO for a write that took nothing). */
static int write_all(int fd, const void *data, size_t len)
{
	const char *p = data;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n <= 0)
			return n < 0 ? errno : EIO;     /* a full disk writes part, then ENOSPC */
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Ends the run if path is a symlink that leads nowhere: a new file would replace the link. */
static void xrefuse_dangling(const char *path, const char *what)
{
	struct stat st;
	if (!lstat(path, &st) && S_ISLNK(st.st_mode) && stat(path, &st))
		fail("%s %s is a symlink that leads to no file: name the file itself", what, path);
}

/*
 * Creates path.tmp-XXXXXX beside path, mode 0600: its descriptor, its name in tmp.
 * Callers hold signals off until it is gone or renamed.
 */
static int xcreate_temp(const char *path, char *tmp, size_t cap)
{
	int fd;
	if ((size_t)snprintf(tmp, cap, "%s.tmp-XXXXXX", path) >= cap)
		fail("path too long: %s", path);
	if ((fd = mkstemp(tmp)) < 0)
		fail("cannot create %s: %s", path,
		     errno == ENOENT ? "no such directory" : strerror(errno));
	return fd;
}

/*
 * Writes a whole file through a temporary one beside it, synced before it takes the name, so
 * that a crash or a power cut leaves the old file or the new one, never part of one. A key
 * (replace 0) gets mode 0600 and is linked into place: an existing file is never replaced
 * (rename would); one that another run made meanwhile is the key then. A certificate
 * (replace 1) is renamed over the old one and keeps its mode and, where we may, its owner;
 * a new one is 0644. Its write is the run's last act, with signals held (main): they stay so.
 */
static void xwrite_file(const char *path, const void *data, size_t len, int replace)
{
	char tmp[4096];
	struct stat st;
	int keep = replace && !stat(path, &st), fd, dir, err, left;
	hold_signals(1);                /* no signal may leave the temporary file behind */
	fd = xcreate_temp(path, tmp, sizeof tmp);
	err = write_all(fd, data, len);
	if (!err && keep && fchown(fd, st.st_uid, st.st_gid) && fchown(fd, (uid_t)-1, st.st_gid)) {
		/* only root gives a file away; a member of its group keeps that; else it is ours */
	}
	if (!err && (fchmod(fd, keep ? st.st_mode & 0777 : replace ? 0644 : 0600) || fsync(fd)))
		err = errno;
	if (close(fd) && !err)
		err = errno;
	if (!err && replace && rename(tmp, path))      /* the new certificate is not lost */
		fail("cannot replace %s: %s; the new certificate is in %s", path, strerror(errno),
		     tmp);
	if (!err && !replace && link(tmp, path) && errno != EEXIST)
		err = errno;    /* EEXIST: a run beside us made the key, and that one stands */
	left = (err || !replace) && unlink(tmp);  /* after link (a key's copy); gone after rename */
	if (left && !err)
		fail("cannot remove %s: %s", tmp, strerror(errno));
	/* the new name too must survive a power cut; dirname(3) may cut tmp down, done with now */
	if (!err && (dir = open(dirname(tmp), O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
		fsync(dir);     /* a directory that cannot be synced: the rename stands */
		close(dir);
	}
	if (!replace)
		hold_signals(0);
	if (err)        /* the first error, not the unlink's after it */
		fail("cannot %s %s: %s%s%s", replace ? "write" : "create", path, strerror(err),
		     left ? "; cannot remove " : "", left ? tmp : "");
}

/* Days from 1970-01-01 to the date y-m-d of the proleptic Gregorian calendar. */
static long long days_from_civil(long long y, int m, int d)
{
	long long era, yoe, doy;
	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	return era * 146097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719468;
}

/* Seconds since 1970 of a date and time, each field in range (a day in its month); or -1. */
static long long civil_time(long long y, long long mo, long long d, long long h, long long mi,
			    long long s)
{
	if (y < 0 || mo < 1 || mo > 12 || d < 1 || h < 0 || h > 23 || mi < 0 ||
	    mi > 59 || s < 0 || s > 60 || days_from_civil(y, (int)mo, (int)d) >=
	    days_from_civil(y + mo / 12, (int)(mo % 12 + 1), 1))   /* a day past its month: none */
		return -1;
	return days_from_civil(y, (int)mo, (int)d) * 86400 + h * 3600 + mi * 60 + s;
}

/* The n decimal digits at s, or -1. */
static long long number(const char *s, int n)
{
	long long v = 0;
	while (n-- > 0) {
		if (*s < '0' || *s > '9')
			return -1;
		v = v * 10 + *s++ - '0';
	}
	return v;
}

/*
 * Seconds since 1970 of an IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT", RFC 9110 5.6.7) or of
 * an RFC 3339 date-time ("2026-03-17T08:13:43Z", fractional seconds and an offset allowed);
 * negative if s is neither.
 */
static long long parse_date(const char *s)
{
	static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
	size_t n = strlen(s);
	int imf = n == 29 && s[3] == ',' && s[4] == ' ' && s[7] == ' ' && s[11] == ' ' &&
		  s[16] == ' ' && !strcmp(s + 25, " GMT");
	char mon[4] = { 0 };
	const char *t = s + (imf ? 17 : 11), *m;      /* the time of day */
	long long y, mo, d, at, off;
	if (!imf && (n < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't')))
		return -1;
	memcpy(mon, s + 8, 3);
	m = strstr(months, mon);
	y = number(s + (imf ? 12 : 0), 4);
	mo = !imf ? number(s + 5, 2) : m && (m - months) % 3 == 0 ? (m - months) / 3 + 1 : -1;
	d = number(s + (imf ? 5 : 8), 2);
	if (t[2] != ':' || t[5] != ':' ||
	    (at = civil_time(y, mo, d, number(t, 2), number(t + 3, 2), number(t + 6, 2))) < 0)
		return -1;
	t += 8;
	if (imf)
		return at;
	if (*t == '.' && t[1] >= '0' && t[1] <= '9')
		t += 1 + strspn(t + 1, "0123456789");           /* whole seconds suffice */
	if (*t == 'Z' || *t == 'z')     /* RFC 3339 5.6: an offset is required, Z or hh:mm */
		return t[1] ? -1 : at;
	if ((*t == '+' || *t == '-') && strlen(t) == 6 && t[3] == ':' &&
	    (off = civil_time(1970, 1, 1, number(t + 1, 2), number(t + 4, 2), 0)) >= 0)
		return *t == '-' ? at + off : at - off; /* hh:mm, range-checked as a time of day */
	return -1;
}

/*
 * Retry-After v (RFC 9110 10.2.3), seconds or a date, in ms from now; -1 if neither. A date counts
 * from the response's Date, the server's clock, if it has one: a router's own may be hours off.
 */
static long long retry_after_ms(const char *v, const char *date)
{
	size_t n = strlen(v);
	long long at, now;
	if (n && strspn(v, "0123456789") == n)
		return n > 9 ? 999999999000LL : number(v, (int)n) * 1000;
	if ((at = parse_date(v)) < 0)
		return -1;
	if ((now = parse_date(date)) < 0)       /* no usable Date: our clock */
		now = (long long)time(NULL);
	return at > now ? (at - now) * 1000 : 0;
}

/* Milliseconds of a monotonic clock: what deadlines are measured in. */
static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sleeps ms milliseconds, signals or not. */
static void sleep_ms(long long ms)
{
	struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000 };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		continue;       /* the rest of the wait */
}

/*
 * Writes the message as one line on stderr. It may hold a server's text: so that it can neither
 * drive nor fool the terminal, every byte but printable ASCII becomes '?': controls, DEL, and
 * all of UTF-8, where invisible, bidirectional and look-alike characters hide.
 */
static void put_clean(const char *fmt, va_list ap)
{
	unsigned char msg[2048];
	size_t k;
	vsnprintf((char *)msg, sizeof msg - 1, fmt, ap);
	for (k = 0; msg[k]; k++)
		msg[k] = msg[k] >= 0x20 && msg[k] < 0x7F ? msg[k] : '?';
	msg[k] = '\n';         /* one write: a signal's line cannot cut into it */
	fwrite(msg, 1, k + 1, stderr);
}

/* Ends the run: one line on stderr, the challenges undone (files removed, hook told), exit 2. */
static __attribute__((noreturn, format(printf, 1, 2))) void fail(const char *fmt, ...)
{
	va_list ap;
	undo_challenges("failed", 0);   /* a signal now: on_signal undoes the rest */
	hold_signals(1);        /* no signal's line may cut into this one */
	fputs("acme-tiny: ", stderr);
	va_start(ap, fmt);
	put_clean(fmt, ap);
	va_end(ap);
	exit(2);
}

/* Progress, much as acme_tiny.py prints it (README says how it differs); --quiet silences it. */
static __attribute__((format(printf, 1, 2))) void info(const char *fmt, ...)
{
	va_list ap;
	if (run.quiet)
		return;
	va_start(ap, fmt);
	put_clean(fmt, ap);
	va_end(ap);
}
