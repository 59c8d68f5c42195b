package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// result is one measured run of one server.
type result struct {
	round   int
	server  string
	s       *sample
	reloads int // policy reloads keygate completed during the run
}

type report struct {
	cfg      *config
	machine  machine
	pinned   bool
	runs     []result
	rss      int64 // keygate's peak RSS
	profiles []profiled
}

// profiled is a CPU profile taken in a run of its own.
type profiled struct {
	server, path string
	cpuPerReq    float64 // µs, in the profiled run
}

type machine struct {
	cpus      int
	model     string
	loadStart string // /proc/loadavg's 1, 5 and 15 minute figures
}

func describeMachine() machine {
	m := machine{cpus: runtime.NumCPU(), model: "unknown CPU", loadStart: loadAvg()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.model = strings.TrimSpace(v)
				break
			}
		}
	}
	return m
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "unknown"
}

func (r *report) errors() int {
	n := 0
	for _, x := range r.runs {
		n += x.s.errors
	}
	return n
}

// byRound returns f of the given server's run in each round, in round order.
func (r *report) byRound(server string, f func(result) float64) []float64 {
	var out []float64
	for _, x := range r.runs {
		if x.server == server {
			out = append(out, f(x))
		}
	}
	return out
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}

func sum(v []float64) float64 {
	t := 0.0
	for _, x := range v {
		t += x
	}
	return t
}

// ratio describes num ÷ den per round: the median and the range.
func ratio(num, den []float64) string {
	if len(num) != len(den) || len(num) == 0 {
		return "n/a"
	}
	rs := make([]float64, len(num))
	for i := range num {
		rs[i] = num[i] / den[i]
	}
	return fmt.Sprintf("%.2f× (rounds %.2f–%.2f)", median(rs), slices.Min(rs), slices.Max(rs))
}

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func (r *report) print(w io.Writer) {
	c := r.cfg
	if c.mode == "http" {
		fmt.Fprintf(w, "\nkeygate HTTP load benchmark: %d rounds × %v (after %v warm-up), wrk 1 thread × %d connections, %d keys; floor: net/http answering 200\n",
			c.rounds, c.load.duration, c.load.warmup, c.load.concurrency, c.keys)
	} else {
		fmt.Fprintf(w, "\nkeygate load benchmark: %d rounds × %v (after %v warm-up), concurrency %d over %d connections, %d keys\n",
			c.rounds, c.load.duration, c.load.warmup, c.load.concurrency, c.load.connections, c.keys)
	}
	switch {
	case c.session != "":
		fmt.Fprintf(w, "credential: a %s session (JWT, EdDSA) of %s in the session header, no API key; the endpoint requires a session\n", c.session, sessionUser)
	case c.rateLimit != "":
		fmt.Fprintf(w, "credential: the API key, with its own rate limit (-ratelimit %s)\n", c.rateLimit)
	}
	pin := "not pinned"
	if r.pinned {
		pin = "servers pinned to CPU 0, load generator to CPU 1"
	}
	fmt.Fprintf(w, "machine: %d CPUs, %s, %s; load average %s at start, %s at end; %s\n",
		r.machine.cpus, r.machine.model, runtime.Version(), r.machine.loadStart, loadAvg(), pin)
	fmt.Fprintf(w, "CPU/req: server utime+stime from /proc/PID/stat (ticks of 1/%d s, sysconf CLK_TCK on Linux) ÷ requests in the window\n", clockTicks)
	fmt.Fprintf(w, "other CPU: busy CPU (/proc/stat) outside server and load generator, %% of one CPU: other processes and uncharged interrupt work\n\n")

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "round\tserver\treq/s\tp50 µs\tp90 µs\tp99 µs\terrors\tCPU/req µs\tother CPU %\treloads\t")
	for _, x := range r.runs {
		reloads := "-"
		if x.server == reloadName {
			reloads = fmt.Sprint(x.reloads)
		}
		fmt.Fprintf(tw, "%d\t%s\t%.0f\t%.0f\t%.0f\t%.0f\t%d\t%.1f\t%.0f\t%s\t\n", x.round, x.server, x.s.rps(),
			micros(x.s.quantile(0.5)), micros(x.s.quantile(0.9)), micros(x.s.quantile(0.99)), x.s.errors, x.s.cpuPerRequest(), x.s.otherCPU(), reloads)
	}
	fmt.Fprintln(tw, "\t\t\t\t\t\t\t\t\t\t")
	for _, name := range []string{floorName, keygateSrv, reloadName} {
		if len(r.byRound(name, func(result) float64 { return 0 })) == 0 {
			continue
		}
		q := func(p float64) float64 {
			return median(r.byRound(name, func(x result) float64 { return micros(x.s.quantile(p)) }))
		}
		fmt.Fprintf(tw, "median\t%s\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%.1f\t%.0f\t\t\n", name,
			median(r.byRound(name, func(x result) float64 { return x.s.rps() })), q(0.5), q(0.9), q(0.99),
			sum(r.byRound(name, func(x result) float64 { return float64(x.s.errors) })),
			median(r.byRound(name, func(x result) float64 { return x.s.cpuPerRequest() })),
			median(r.byRound(name, func(x result) float64 { return x.s.otherCPU() })))
	}
	tw.Flush()
	fmt.Fprintln(w, "(median rows: the median over rounds of each column; errors are summed)")

	cpu := func(x result) float64 { return x.s.cpuPerRequest() }
	p99 := func(x result) float64 { return micros(x.s.quantile(0.99)) }
	fmt.Fprintf(w, "\nkeygate ÷ floor, median of per-round ratios: CPU/request %s, p99 %s\n",
		ratio(r.byRound(keygateSrv, cpu), r.byRound(floorName, cpu)),
		ratio(r.byRound(keygateSrv, p99), r.byRound(floorName, p99)))
	if len(r.byRound(reloadName, cpu)) > 0 {
		fmt.Fprintf(w, "reloading ÷ steady keygate (policy swapped every %v): p99 %s, CPU/request %s\n", c.reloadEvery,
			ratio(r.byRound(reloadName, p99), r.byRound(keygateSrv, p99)),
			ratio(r.byRound(reloadName, cpu), r.byRound(keygateSrv, cpu)))
	}
	fmt.Fprintf(w, "keygate peak RSS: %.1f MiB\n", float64(r.rss)/(1<<20))
	for _, p := range r.profiles {
		fmt.Fprintf(w, "CPU profile of %s (%.1f µs CPU/req in its run): go tool pprof -top -cum %s\n", p.server, p.cpuPerReq, p.path)
	}
}
