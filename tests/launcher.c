/*
 * launcher REPORT PROGRAM [ARG...]: runs PROGRAM (found on PATH) as a child
 * and writes to REPORT its pid as soon as it has one, then a line with its
 * wait status, peak RSS in KiB and CPU time (user + system) in microseconds.
 *
 * Used by tests/test_evil.py and bench/bench.py. ru_maxrss on Linux is kept
 * across execve(), so a program started from Python reports at least Python's
 * own peak; a child of this small program starts from a few hundred KiB. The
 * figures are the child's own, with any children it waited for, and not this
 * launcher's.
 */
#include <errno.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	struct rusage ru;
	int status;
	pid_t pid;
	FILE *report;

	if (argc < 3 || !(report = fopen(argv[1], "w")))
		return 125;
	if ((pid = fork()) == 0) {
		execvp(argv[2], argv + 2);
		fprintf(stderr, "launcher: cannot run %s\n", argv[2]);
		_exit(127);
	}
	if (pid < 0)
		return 125;
	fprintf(report, "%d\n", (int)pid);
	fflush(report);
	while (wait4(pid, &status, 0, &ru) < 0)
		if (errno != EINTR)
			return 125;
	fprintf(report, "%d %ld %lld\n", status, ru.ru_maxrss,
		(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000LL +
		ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
	return fclose(report) ? 125 : 0;
}
