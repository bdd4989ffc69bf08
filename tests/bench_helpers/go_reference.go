// Reference output for coderig bench's Go-format ports (Duration.String, vegeta's round,
// text/tabwriter). `go run go_reference.go > go_reference.txt` regenerates the golden file;
// test_bench_report.py compares our Python rendering of the same inputs with it.
package main

import (
	"fmt"
	"os"
	"sort"
	"text/tabwriter"
	"time"
)

var durations = [...]time.Duration{time.Hour, time.Minute, time.Second, time.Millisecond, time.Microsecond, time.Nanosecond}

func round(d time.Duration) time.Duration {
	for i, unit := range durations {
		if d >= unit && i < len(durations)-1 {
			return d.Round(durations[i+1])
		}
	}
	return d
}

func main() {
	ds := []int64{0, 1, 999, 1000, 1500, 999999, 1000000, 1268625, 1268500, 12300000, 100000000, 999999999, 1000000000, 1500000000, 10094965987, 59999999999, 60000000000, 123456789012, 3600000000000, 3723456789012, 113172, 113172398, 2500}
	for _, d := range ds {
		fmt.Printf("%d %s %s\n", d, time.Duration(d).String(), round(time.Duration(d)).String())
	}
	const fmtstr = "Requests\t[total, rate, throughput]\t%d, %.2f, %.2f\n" +
		"Duration\t[total, attack, wait]\t%s, %s, %s\n" +
		"Latencies\t[min, mean, 50, 90, 95, 99, max]\t%s, %s, %s, %s, %s, %s, %s\n" +
		"Bytes In\t[total, mean]\t%d, %.2f\n" +
		"Bytes Out\t[total, mean]\t%d, %.2f\n" +
		"Success\t[ratio]\t%.2f%%\n" +
		"Status Codes\t[code:count]\t"
	tw := tabwriter.NewWriter(os.Stdout, 0, 8, 2, ' ', tabwriter.StripEscape)
	fmt.Fprintf(tw, fmtstr, 1200, 120.0, 65.87, round(10094965987), round(9949883921), round(145082066),
		round(90438129), round(113172398), round(108272568), round(130000000), round(140182350), round(247771566), round(1264815246),
		3714690, 3095.57, 0, 0.0, 55.42)
	codes := map[string]int{"0": 535, "200": 665}
	keys := []string{}
	for k := range codes { keys = append(keys, k) }
	sort.Strings(keys)
	for _, c := range keys { fmt.Fprintf(tw, "%s:%d  ", c, codes[c]) }
	fmt.Fprintln(tw, "\nError Set:")
	fmt.Fprintln(tw, "Get http://localhost:6060: dial tcp 127.0.0.1:6060: connection refused")
	tw.Flush()
	fmt.Println("----")
	tw = tabwriter.NewWriter(os.Stdout, 0, 8, 2, ' ', tabwriter.StripEscape)
	fmt.Fprintf(tw, "Bucket\t\t#\t%%\tHistogram\n")
	rows := [][]string{{"0s", "2ms"}, {"2ms", "4ms"}, {"4ms", "100ms"}, {"100ms", "+Inf"}}
	counts := []int{6007, 5505, 1, 0}
	for i, r := range rows {
		ratio := float64(counts[i]) / 11513.0
		pad := ""
		for j := 0; j < int(ratio*75); j++ { pad += "#" }
		fmt.Fprintf(tw, "[%s,\t%s]\t%d\t%.2f%%\t%s\n", r[0], r[1], counts[i], ratio*100, pad)
	}
	tw.Flush()
}
