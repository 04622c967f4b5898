#!/usr/bin/env python3
# ctest_cpu_times.py BUILD_DIR OUT.tsv [-j N] [-R REGEX] [-E REGEX] [-LE LABEL]: run the ctest tests
# of BUILD_DIR (their commands, environment and working directory from `ctest --show-only=json-v1`,
# fixture set-ups first and pulled in when a selected test needs them) N at a time, and write one
# line per test: name, CPU seconds (user + sys of the test and every child it waited for, threads
# included), wall seconds, exit status. CPU seconds hardly move with the load of a shared box, wall
# seconds do: docs/reliability.md "CI" compares suites by the first. Not a test runner: it judges
# nothing (SKIP_RETURN_CODE and expected statuses are ctest's business).
import json, os, re, subprocess, sys, threading, time, resource
from concurrent.futures import ThreadPoolExecutor

args = sys.argv[1:]
build, out = args[0], args[1]
jobs, inc, exc, le = 1, None, None, None
i = 2
while i < len(args):
    if args[i] == '-j': jobs = int(args[i + 1]); i += 2
    elif args[i] == '-R': inc = re.compile(args[i + 1]); i += 2
    elif args[i] == '-E': exc = re.compile(args[i + 1]); i += 2
    elif args[i] == '-LE': le = args[i + 1]; i += 2
    else: sys.exit('bad arg ' + args[i])
d = json.loads(subprocess.check_output(['ctest', '--show-only=json-v1'], cwd=build))
tests = []
for t in d['tests']:
    p = {x['name']: x['value'] for x in t.get('properties', [])}
    if le and le in (p.get('LABELS') or []): continue
    tests.append((t['name'], t['command'], p))
setups = {}
for n, c, p in tests:
    for f in p.get('FIXTURES_SETUP') or []: setups.setdefault(f, []).append(n)
done = {n: threading.Event() for n, _, _ in tests}
selected = [t for t in tests if (not inc or inc.search(t[0])) and not (exc and exc.search(t[0]))]
# pull in the setups the selected tests need
need = set(n for n, _, _ in selected)
changed = True
byname = {t[0]: t for t in tests}
while changed:
    changed = False
    for n in list(need):
        for f in byname[n][2].get('FIXTURES_REQUIRED') or []:
            for s in setups.get(f, []):
                if s not in need: need.add(s); changed = True
run = [t for t in tests if t[0] in need]
lock = threading.Lock()
fo = open(out, 'w')

def one(t):
    n, c, p = t
    for f in p.get('FIXTURES_REQUIRED') or []:
        for s in setups.get(f, []):
            if s in need: done[s].wait()
    env = dict(os.environ)
    for e in p.get('ENVIRONMENT') or []:
        k, v = e.split('=', 1); env[k] = v
    cwd = p.get('WORKING_DIRECTORY', build)
    t0 = time.time()
    try:
        pr = subprocess.Popen(c, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, st, ru = os.wait4(pr.pid, 0)
        rc = pr.returncode = os.waitstatus_to_exitcode(st)
        cpu = ru.ru_utime + ru.ru_stime
    except OSError:
        rc, cpu = -999, 0
    w = time.time() - t0
    with lock:
        fo.write('%s\t%.2f\t%.2f\t%d\n' % (n, cpu, w, rc)); fo.flush()
    done[n].set()

# declaration order, set-ups first
run.sort(key=lambda t: 0 if t[2].get('FIXTURES_SETUP') else 1)
with ThreadPoolExecutor(jobs) as ex:
    list(ex.map(one, run))
