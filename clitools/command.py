"""A command's errors and its main: UserError (printed as one `error: ...` line), an argparse parser whose errors
are one line too (exit status 2), the guard that turns a UserError into its line and an exit status, and the log
line."""
from __future__ import annotations

import argparse
import functools
import os
import signal
import sys
import threading
import time


class UserError(Exception):
    """A user-facing error: the message is one line naming the culprit (white space folded: no line breaks)."""

    def __init__(self, message):
        super().__init__(" ".join(str(message).split()))


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error, exit status 2 (argparse's default prints the usage too)."""

    @classmethod
    def from_doc(cls, prog, doc):
        """The parser of a command whose docstring is `doc`: the first paragraph its description, the rest its
        epilog (as written)."""
        description, epilog = doc.split("\n\n", 1)
        return cls(prog=prog, description=description, epilog=epilog,
                   formatter_class=argparse.RawDescriptionHelpFormatter)

    def error(self, message):
        self.exit(2, f"error: {message} (see --help)\n")


class Terminated(KeyboardInterrupt):
    """SIGTERM (`kill PID`), raised in the main thread like Ctrl-C's KeyboardInterrupt, so that what a command does on
    an interruption (end its children, mark its run killed) it does on a kill too."""


def raise_terminated(signum, frame):
    if os.getpid() != HANDLER_PID[0]:  # a forked child (a worker pool's) inherited the handler: die as by default
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        return
    raise Terminated()


HANDLER_PID = [None]  # the process that installed raise_terminated


def guard(status=1, interrupted="interrupted", setup=None):
    """Decorate main(argv) -> exit status: setup() first (when given); a UserError becomes its `error: ...` line and
    `status`, Ctrl-C an `error: INTERRUPTED` line and 130, SIGTERM an `error: killed (SIGTERM)` line and 143, no
    traceback either way."""

    def decorate(main):
        @functools.wraps(main)
        def guarded(argv=None):
            if setup is not None:
                setup()
            if threading.current_thread() is threading.main_thread():
                HANDLER_PID[0] = os.getpid()
                signal.signal(signal.SIGTERM, raise_terminated)
            try:
                return main(argv) or 0
            except UserError as e:
                print(f"error: {e}", file=sys.stderr, flush=True)
                return status
            except Terminated:
                print("error: killed (SIGTERM)", file=sys.stderr, flush=True)
                return 143
            except KeyboardInterrupt:
                print(f"error: {interrupted}", file=sys.stderr, flush=True)
                return 130

        return guarded

    return decorate


def log(msg, *, stderr=False, stamp=True):
    """One log line, flushed: `[HH:MM:SS] MSG` on stdout (the scripts'), or with stderr and no stamp MSG alone on
    stderr (the data preparation's, whose stdout is its summary)."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}" if stamp else msg, file=sys.stderr if stderr else sys.stdout,
          flush=True)
