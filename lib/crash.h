/* crash.h -- the fatal-signal handler: a process that dies of SIGSEGV,
 * SIGBUS, SIGFPE, SIGILL or SIGABRT leaves one JSON log line saying so.
 *
 * {"ts":"2026-12-04T19:30:00.123Z","level":"fatal","instance":"product-b",
 *  "msg":"crashed: signal 11 (SIGSEGV)","signal":11,"pid":4242,
 *  "fault_addr":"0x0","backtrace":["product+0x1a2b3","libc.so.6+0x3c050",...]}
 *
 * The line goes to stderr (the instance's log) in one write(2), in the
 * form of log.h's lines, with level "fatal". fault_addr is there when the
 * kernel raised the signal for a fault, sender_pid when a process sent it
 * (kill). Each backtrace frame is "<module>+0x<offset>", the offset from
 * the module's load address (addr2line -e <module> <offset>), or a bare
 * address outside every module loaded at install time. Then the default
 * action runs: the process dies of the same signal (its exit status and
 * core dump say so). */
#ifndef SHOP_CRASH_H
#define SHOP_CRASH_H

/* Installs the handler for the five signals, on an alternate signal stack
 * for the calling thread (call from main, first: threads made later run
 * the handler on their own stack). instance names the process in the line
 * (copied). Loads what backtrace(3) needs now, so that the handler
 * allocates nothing. Returns 0, or an errno value. Once per process. */
int shop_crash_install(const char *instance);

#endif
