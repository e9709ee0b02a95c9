// Command maxspn_go times the authors' Go solvers (github.com/shtechair/maxspn) per query, so that
// benchmarks/spn_solvers.py can compare spnkit with them on the same SPN and query lines.
//
// Usage: maxspn_go SPN_FILE QUERY_FILE METHOD [PARAM] [TIMEOUT_S]
//
//	METHOD: bt ng amap bs kbt exact-mc exact-fc exact-fco exact-fcos; PARAM = beam (bs) or K (kbt).
//
// Query lines: one symbol per variable ('?' query, '*' hidden, digit evidence), commas allowed.
// Output (stdout): one CSV line per query, "index,log_value,seconds"; the time covers MAP2MAX, the solver
// and the evaluation of the returned assignment, as in the authors' driver.
package main

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/shtechair/maxspn"
)

func main() {
	if len(os.Args) < 4 {
		fmt.Fprintln(os.Stderr, "usage: maxspn_go SPN_FILE QUERY_FILE METHOD [PARAM] [TIMEOUT_S]")
		os.Exit(2)
	}
	spn := maxspn.LoadSPN(os.Args[1])
	method := os.Args[3]
	param := 0
	if len(os.Args) > 4 {
		param, _ = strconv.Atoi(os.Args[4])
	}
	timeout := 600
	if len(os.Args) > 5 {
		timeout, _ = strconv.Atoi(os.Args[5])
	}
	f, err := os.Open(os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	i := 0
	for sc.Scan() {
		line := strings.ReplaceAll(strings.TrimSpace(sc.Text()), ",", "")
		if line == "" {
			continue
		}
		q := []byte(line)
		t0 := time.Now()
		r := maxspn.MAP2MAX(spn, q)
		var v float64
		switch method {
		case "bt":
			v = r.EvalX(maxspn.ApproxBT(r))
		case "ng":
			v = r.EvalX(maxspn.ApproxNG(r))
		case "amap":
			v = maxspn.ApproxAMAP(r, timeout).P
		case "bs":
			v = maxspn.ApproxBS(r, param, timeout)
		case "kbt":
			v = maxspn.ApproxKBT(r, param, timeout)
		case "exact-mc":
			v = maxspn.ExactMC(r, math.Inf(-1), timeout)
		case "exact-fc":
			v = maxspn.ExactFC(r, math.Inf(-1), timeout)
		case "exact-fco":
			v = maxspn.ExactFCnO(r, math.Inf(-1), timeout)
		case "exact-fcos":
			v = maxspn.ExactFCnOnS(r, math.Inf(-1), timeout)
		default:
			fmt.Fprintln(os.Stderr, "unknown method", method)
			os.Exit(2)
		}
		fmt.Fprintf(out, "%d,%.17g,%.9g\n", i, v, time.Since(t0).Seconds())
		i++
	}
}
