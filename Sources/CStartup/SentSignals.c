// The crash signals when another process sends them.
//
// SIGABRT, SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP and SIGSYS report a fault of the program
// itself, and the Swift runtime handles them with its crash report. Sent by another process
// (`kill -ABRT`), there is no fault: the runtime printed its "Program crashed" report of 70 lines,
// and the command went on and ended with status 0 (a helper's sweep; `train` even saved and
// printed its results). So the tool tells the two apart: a signal sent with kill(2), sigqueue(3)
// or tgkill(2) by another process (si_code ≤ 0 and another process id) goes to the tool's stop
// handler, as SIGTERM does; every other one, a fault or the program's own abort(), to the handler
// that was there before (the runtime's crash report), or to the default action.

#include "CStartup.h"

#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <unistd.h>

#if defined(__linux__) || defined(__APPLE__)
static const int faultSignals[] = {SIGABRT, SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP, SIGSYS};
enum { faultSignalCount = sizeof faultSignals / sizeof faultSignals[0] };

/// The action each fault signal had before ours, in the order of `faultSignals`.
static struct sigaction previousActions[faultSignalCount];
/// The tool's stop handler for a signal sent by another process.
static void (*sentSignalHandler)(int);

static void onFaultSignal(int number, siginfo_t *info, void *context) {
    // Sent: SI_USER (kill), SI_QUEUE, SI_TKILL, …, all ≤ 0 on Linux; SI_USER is positive on macOS.
    if (info != NULL && (info->si_code <= 0 || info->si_code == SI_USER) && info->si_pid != getpid()) {
        sentSignalHandler(number);
        return;
    }
    for (int i = 0; i < faultSignalCount; i++) {
        if (faultSignals[i] != number) continue;
        struct sigaction *previous = &previousActions[i];
        if ((previous->sa_flags & SA_SIGINFO) && previous->sa_sigaction != NULL) {
            previous->sa_sigaction(number, info, context);
            return;
        }
        if (!(previous->sa_flags & SA_SIGINFO) && previous->sa_handler == SIG_IGN) return;
        if (!(previous->sa_flags & SA_SIGINFO) && previous->sa_handler != SIG_DFL && previous->sa_handler != NULL) {
            previous->sa_handler(number);
            return;
        }
    }
    // The default action: a fault happens again when the instruction runs again; a raised signal
    // (abort) is raised again.
    signal(number, SIG_DFL);
    if (info == NULL || info->si_code <= 0) raise(number);
}

void bp_handle_sent_fault_signals(void (*handler)(int)) {
    sentSignalHandler = handler;
    // Unblocked, as the stop signals are: a parent that blocks them (test runners do, SIGABRT
    // among them) passes its mask on, and a sent signal would wait for ever.
    sigset_t unblocked;
    sigemptyset(&unblocked);
    for (int i = 0; i < faultSignalCount; i++) sigaddset(&unblocked, faultSignals[i]);
    pthread_sigmask(SIG_UNBLOCK, &unblocked, NULL);
    for (int i = 0; i < faultSignalCount; i++) {
        struct sigaction current;
        if (sigaction(faultSignals[i], NULL, &current) != 0) continue;
        if ((current.sa_flags & SA_SIGINFO) && current.sa_sigaction == onFaultSignal) continue;  // installed
        previousActions[i] = current;
        struct sigaction action = current;  // its mask and flags (the runtime's SA_ONSTACK)
        action.sa_sigaction = onFaultSignal;
        action.sa_flags = (current.sa_flags | SA_SIGINFO) & ~SA_RESETHAND;
        sigaction(faultSignals[i], &action, NULL);
    }
}
#else
void bp_handle_sent_fault_signals(void (*handler)(int)) { (void)handler; }
#endif
