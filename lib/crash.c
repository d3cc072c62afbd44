/* crash.c -- the fatal-signal handler (crash.h). Everything the handler
 * runs is async-signal-safe: write(2), clock_gettime(2), getpid(2),
 * sigaction(2), raise(3), and backtrace(3) once its first call (here, at
 * install time) has loaded libgcc_s; no malloc, no stdio, no locks. The
 * module table that turns addresses into "module+offset" is taken at
 * install time, because dladdr(3) and dl_iterate_phdr(3) take the
 * loader's lock. */
#include "crash.h"

#include <errno.h>
#include <execinfo.h>
#include <link.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define CRASH_FRAMES  64
#define CRASH_MODULES 64
#define CRASH_STACK   (64 * 1024) /* the alternate stack: room for backtrace's unwinder */
#define CRASH_LINE    (8 * 1024)

typedef struct crash_module {
	uintptr_t lo, hi; /* [lo, hi): its loaded segments */
	uintptr_t base;   /* load bias: frame - base is the address in the file */
	char name[64];    /* base name, JSON-escaped */
} crash_module;

static const int crash_signals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
static char crash_instance[160]; /* JSON-escaped */
static crash_module crash_modules[CRASH_MODULES];
static int crash_n_modules;
static char crash_stack[CRASH_STACK];
static char crash_line[CRASH_LINE]; /* only the first crashing thread writes it */
static atomic_int crash_busy;

/* ---- install time ---------------------------------------------------------- */

static int module_add(struct dl_phdr_info *info, size_t size, void *arg)
{
	crash_module *m;
	const char *path = info->dlpi_name, *slash;
	char exe[256];
	ssize_t n;

	(void)size;
	(void)arg;
	if (crash_n_modules == CRASH_MODULES)
		return 1;
	m = &crash_modules[crash_n_modules];
	m->lo = UINTPTR_MAX;
	m->hi = 0;
	m->base = (uintptr_t)info->dlpi_addr;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		uintptr_t lo = m->base + ph->p_vaddr;

		if (ph->p_type != PT_LOAD)
			continue;
		if (lo < m->lo)
			m->lo = lo;
		if (lo + ph->p_memsz > m->hi)
			m->hi = lo + ph->p_memsz;
	}
	if (m->hi == 0)
		return 0; /* nothing loaded (the vDSO's table may say so) */
	if (path == NULL || path[0] == '\0') {
		/* The executable itself. */
		if ((n = readlink("/proc/self/exe", exe, sizeof(exe) - 1)) <= 0)
			n = 0;
		exe[n] = '\0';
		path = n > 0 ? exe : "main";
	}
	slash = strrchr(path, '/');
	shop_json_escape(m->name, sizeof(m->name), slash != NULL ? slash + 1 : path);
	crash_n_modules++;
	return 0;
}

static void crash_handler(int sig, siginfo_t *si, void *uctx);

int shop_crash_install(const char *instance)
{
	stack_t ss = {.ss_sp = crash_stack, .ss_size = sizeof(crash_stack)};
	struct sigaction sa;
	void *warm[4];

	shop_json_escape(crash_instance, sizeof(crash_instance), instance);
	/* The first backtrace() dlopens libgcc_s (malloc, the loader's lock):
	 * here, not in the handler. */
	backtrace(warm, 4);
	crash_n_modules = 0;
	dl_iterate_phdr(module_add, NULL);
	if (sigaltstack(&ss, NULL) != 0)
		return errno;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = crash_handler;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
	/* A second fatal signal in the handler's thread is then held back,
	 * and the kernel kills the process for a fault it cannot deliver. */
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < sizeof(crash_signals) / sizeof(crash_signals[0]); i++)
		sigaddset(&sa.sa_mask, crash_signals[i]);
	for (size_t i = 0; i < sizeof(crash_signals) / sizeof(crash_signals[0]); i++)
		if (sigaction(crash_signals[i], &sa, NULL) != 0)
			return errno;
	return 0;
}

/* ---- in the handler: async-signal-safe only --------------------------------- */

typedef struct line {
	char *p;
	size_t len, cap;
} line;

static void put(line *l, const char *s)
{
	for (; *s != '\0' && l->len < l->cap; s++)
		l->p[l->len++] = *s;
}

static void put_udec(line *l, uint64_t v, int min_digits)
{
	char d[24];
	int n = 0;

	do {
		d[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v > 0 || n < min_digits);
	while (n > 0 && l->len < l->cap)
		l->p[l->len++] = d[--n];
}

static void put_hex(line *l, uintptr_t v)
{
	char d[2 * sizeof(v)];
	int n = 0;

	put(l, "0x");
	do {
		d[n++] = "0123456789abcdef"[v & 0xf];
		v >>= 4;
	} while (v > 0);
	while (n > 0 && l->len < l->cap)
		l->p[l->len++] = d[--n];
}

/* RFC 3339 UTC with milliseconds, from the civil-from-days algorithm
 * (gmtime_r is not async-signal-safe). */
static void put_ts(line *l)
{
	struct timespec ts;
	int64_t days, secs, z, era, doe, yoe, doy, mp, y, m, d;

	clock_gettime(CLOCK_REALTIME, &ts);
	days = ts.tv_sec / 86400;
	secs = ts.tv_sec % 86400;
	z = days + 719468;
	era = (z >= 0 ? z : z - 146096) / 146097;
	doe = z - era * 146097;
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	d = doy - (153 * mp + 2) / 5 + 1;
	m = mp < 10 ? mp + 3 : mp - 9;
	y = yoe + era * 400 + (m <= 2);
	put_udec(l, (uint64_t)y, 4);
	put(l, "-");
	put_udec(l, (uint64_t)m, 2);
	put(l, "-");
	put_udec(l, (uint64_t)d, 2);
	put(l, "T");
	put_udec(l, (uint64_t)(secs / 3600), 2);
	put(l, ":");
	put_udec(l, (uint64_t)(secs / 60 % 60), 2);
	put(l, ":");
	put_udec(l, (uint64_t)(secs % 60), 2);
	put(l, ".");
	put_udec(l, (uint64_t)(ts.tv_nsec / 1000000), 3);
	put(l, "Z");
}

static const char *signal_name(int sig)
{
	switch (sig) {
	case SIGSEGV:
		return "SIGSEGV";
	case SIGBUS:
		return "SIGBUS";
	case SIGFPE:
		return "SIGFPE";
	case SIGILL:
		return "SIGILL";
	case SIGABRT:
		return "SIGABRT";
	default:
		return "?";
	}
}

static void put_frame(line *l, uintptr_t a)
{
	put(l, "\"");
	for (int i = 0; i < crash_n_modules; i++) {
		const crash_module *m = &crash_modules[i];

		if (a >= m->lo && a < m->hi) {
			put(l, m->name);
			put(l, "+");
			put_hex(l, a - m->base);
			put(l, "\"");
			return;
		}
	}
	put_hex(l, a);
	put(l, "\"");
}

static void crash_handler(int sig, siginfo_t *si, void *uctx)
{
	line l = {.p = crash_line, .cap = sizeof(crash_line) - 8}; /* room for the close */
	void *frames[CRASH_FRAMES];
	int n;
	ssize_t w;

	(void)uctx;
	/* Another thread is writing its line and will end the process. */
	if (atomic_exchange(&crash_busy, 1) != 0)
		for (;;)
			pause();
	n = backtrace(frames, CRASH_FRAMES);
	put(&l, "{\"ts\":\"");
	put_ts(&l);
	put(&l, "\",\"level\":\"fatal\",\"instance\":\"");
	put(&l, crash_instance);
	put(&l, "\",\"msg\":\"crashed: signal ");
	put_udec(&l, (uint64_t)sig, 1);
	put(&l, " (");
	put(&l, signal_name(sig));
	put(&l, ")\",\"signal\":");
	put_udec(&l, (uint64_t)sig, 1);
	put(&l, ",\"pid\":");
	put_udec(&l, (uint64_t)getpid(), 1);
	if (si != NULL && si->si_code > 0) {
		/* Raised by the kernel for a fault: where. */
		put(&l, ",\"fault_addr\":\"");
		put_hex(&l, (uintptr_t)si->si_addr);
		put(&l, "\"");
	} else if (si != NULL && (si->si_code == SI_USER || si->si_code == SI_TKILL)) {
		put(&l, ",\"sender_pid\":");
		put_udec(&l, (uint64_t)si->si_pid, 1);
	}
	put(&l, ",\"backtrace\":[");
	for (int i = 0; i < n; i++) {
		size_t before = l.len;

		if (i > 0)
			put(&l, ",");
		put_frame(&l, (uintptr_t)frames[i]);
		if (l.len == l.cap) {
			/* Out of room: end at the last whole frame. */
			l.len = before;
			break;
		}
	}
	l.cap = sizeof(crash_line);
	put(&l, "]}\n");
	w = write(STDERR_FILENO, l.p, l.len);
	(void)w;

	/* The default action, for the same signal: the process dies of it. A
	 * fault re-executes and faults again once the handler returns; a
	 * sent signal is raised again (held until the handler returns). */
	signal(sig, SIG_DFL);
	raise(sig);
}
