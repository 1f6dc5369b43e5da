"""Shared helpers for the namespace-lab integration tests: a checker that prints
one line per assertion and a summary, and dumps agent logs when something fails."""
import os
import sys
import traceback

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
import lab as L  # noqa: E402


class Checker:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, name, cond, detail=""):
        if cond:
            self.passed += 1
            print(f"ok   - {name}", flush=True)
        else:
            self.failed += 1
            print(f"FAIL - {name} {detail}", flush=True)
        return cond

    def finish(self, lab=None, error=None):
        if error is not None:
            self.failed += 1
            print("FAIL - scenario aborted:", error, flush=True)
            traceback.print_exception(error)
        if lab is not None and self.failed:
            for h in lab.hosts.values():
                if os.path.exists(h.log_path):
                    print(f"--- agent log h{h.index} ---\n{h.log()}")
        print(f"{self.passed} passed, {self.failed} failed")
        return 1 if self.failed else 0


def run_scenario(name, scenario):
    L.require_root()
    c = Checker()
    try:
        with L.Lab(name) as lab:
            try:
                scenario(lab, c)
            except Exception as e:  # report with the agents' logs while they exist, then clean up
                return c.finish(lab, e)
            return c.finish(lab)
    except Exception as e:  # the lab itself could not be built
        return c.finish(None, e)


def cross_pairs(hosts):
    cs = [c for h in hosts for c in h.containers]
    return [(a, b) for i, a in enumerate(cs) for b in cs[i + 1:] if a.host is not b.host]
