#!/usr/bin/env python3
"""The filter's hot per-packet cost under several `lwt` builds, alternating.

usage (root): scripts/filter-hot-ab.py ROUNDS REPEAT FAMILIES SIZES NAME=LWT [NAME=LWT...]
  e.g. scripts/filter-hot-ab.py 15 300000 bench,wide-ranges 10,100000 \
           main=/path/to/main/lwt this=target/release/lwt

Rule sets and hot packets come from `lwtkit-bench mix --dump DIR` (DIR in
$LWT_AB_RULES, default /tmp/lwt-ab-rules: FAMILY-N.rules, FAMILY.pcap).
Each build creates its own policy (`filter create` + `replace`) in its own
throwaway namespace, so builds with different cell layouts compare; each
round runs every build and the empty program (`--builtin pass`) once in
rotated order (`lwt test --hook out --policy p --pcap FAMILY.pcap --repeat
REPEAT`). Prints medians and minimums per build, ns over the empty program,
and each build's per-round difference to the first build. Namespaces are
reset and deleted on the way out, even on failure."""
import json, subprocess, sys, statistics, os, time
rounds, repeat = int(sys.argv[1]), int(sys.argv[2])
fams, sizes = sys.argv[3].split(','), [int(x) for x in sys.argv[4].split(',')]
builds = [a.split('=', 1) for a in sys.argv[5:]]
R = os.environ.get('LWT_AB_RULES', '/tmp/lwt-ab-rules')
pid = os.getpid()
made = []
def sh(*a):
    return subprocess.run(a, check=True, capture_output=True, text=True).stdout
def ns_of(b, f, n): return f'ab{pid%10000}-{b}-{f[:6]}-{n}'
try:
    for bi, (name, exe) in enumerate(builds):
        for f in fams:
            for n in sizes:
                ns = ns_of(bi, f, n)
                sh('ip', 'netns', 'add', ns); made.append((ns, exe))
                sh(exe, '-n', ns, 'filter', 'create', 'p', '--capacity', str(n + 16))
                sh(exe, '-n', ns, 'filter', 'replace', 'p', '--file', f'{R}/{f}-{n}.rules')
    res = {}
    def run(exe, ns, f, what):
        out = sh(exe, '-n', ns, 'test', '--hook', 'out', *what, '--pcap', f'{R}/{f}.pcap', '--repeat', str(repeat), '-j')
        return json.loads(out)[0]['ns']
    for r in range(rounds):
        for f in fams:
            for n in sizes:
                order = list(range(len(builds))) + ['floor']
                k = r % len(order); order = order[k:] + order[:k]
                for bi in order:
                    if bi == 'floor':
                        v = run(builds[0][1], ns_of(0, f, n), f, ['--builtin', 'pass'])
                        res.setdefault(('floor', f, n), []).append(v)
                    else:
                        v = run(builds[bi][1], ns_of(bi, f, n), f, ['--policy', 'p'])
                        res.setdefault((builds[bi][0], f, n), []).append(v)
    print(f'hot test-run ns (repeat {repeat}, {rounds} alternating rounds), load {os.getloadavg()}')
    print(f"{'family':<12} {'rules':>7} " + ' '.join(f'{b[0]+" med/min":>16}' for b in builds) + f" {'floor med':>9}  " + ' '.join(f'{b[0]+" +ns":>10}' for b in builds))
    for f in fams:
        for n in sizes:
            fl = statistics.median(res[('floor', f, n)])
            cells = []; over = []
            for b in builds:
                v = res[(b[0], f, n)]
                cells.append(f'{statistics.median(v):>9.1f}/{min(v):>5}')
                over.append(f'{statistics.median(v)-fl:>+10.1f}')
            print(f'{f:<12} {n:>7} ' + ' '.join(f'{c:>16}' for c in cells) + f' {fl:>9.1f}  ' + ' '.join(over))
    # paired per-round differences against the first build
    if len(builds) > 1:
        for f in fams:
            for n in sizes:
                a = res[(builds[0][0], f, n)]
                for b in builds[1:]:
                    d = [y - x for x, y in zip(a, res[(b[0], f, n)])]
                    print(f'  {f} {n}: {b[0]} - {builds[0][0]} per round: median {statistics.median(d):+.1f}  ({" ".join(str(x) for x in d)})')
finally:
    for ns, exe in made:
        subprocess.run([exe, '-n', ns, 'reset'], capture_output=True)
        subprocess.run(['ip', 'netns', 'del', ns], capture_output=True)
