package main

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// compare summarizes several runs: for each relay the median, lowest and
// highest relay rate and final-dot latencies over its rounds, what was
// lost or duplicated in all of them, and with smxd and postfix both
// measured the ratio of their median rates and of each round's pair.
func compare(mtas []string, results []result) []string {
	var lines []string
	median := func(v []float64) float64 {
		if len(v) == 0 {
			return 0
		}
		s := slices.Sorted(slices.Values(v))
		if len(s)%2 == 1 {
			return s[len(s)/2]
		}
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	medians := map[string]float64{}
	loadMin, loadMax := -1.0, 0.0
	busyMin, busyMax := -1.0, -1.0
	for _, mta := range mtas {
		var rates, p50s, p99s []float64
		lost, dups := 0, 0
		for _, r := range results {
			if r.mta != mta {
				continue
			}
			rates = append(rates, r.rate())
			p50s = append(p50s, millis(r.dotP50))
			p99s = append(p99s, millis(r.dotP99))
			lost += r.lost()
			dups += r.duplicates
			if r.busyBefore >= 0 {
				if busyMin < 0 || r.busyBefore < busyMin {
					busyMin = r.busyBefore
				}
				busyMax = max(busyMax, r.busyBefore)
			}
			for _, l := range []float64{r.loadBefore, r.loadAfter} {
				if loadMin < 0 || l < loadMin {
					loadMin = l
				}
				loadMax = max(loadMax, l)
			}
		}
		if len(rates) == 0 {
			continue
		}
		medians[mta] = median(rates)
		lines = append(lines, fmt.Sprintf("relaybench: mta=%s rounds=%d relay_rate=%.1f/s (%.1f-%.1f) dot_p50=%.1fms (%.1f-%.1f) dot_p99=%.1fms (%.1f-%.1f) lost=%d duplicates=%d",
			mta, len(rates), medians[mta], slices.Min(rates), slices.Max(rates),
			median(p50s), slices.Min(p50s), slices.Max(p50s), median(p99s), slices.Min(p99s), slices.Max(p99s), lost, dups))
	}
	if medians["smxd"] > 0 && medians["postfix"] > 0 {
		var per []string
		byRound := map[int]map[string]float64{}
		for _, r := range results {
			if byRound[r.round] == nil {
				byRound[r.round] = map[string]float64{}
			}
			byRound[r.round][r.mta] = r.rate()
		}
		for round := 1; byRound[round] != nil; round++ {
			if pf := byRound[round]["postfix"]; pf > 0 {
				per = append(per, strconv.FormatFloat(byRound[round]["smxd"]/pf, 'f', 2, 64))
			}
		}
		lines = append(lines, fmt.Sprintf("relaybench: ratio smxd/postfix=%.2f (median rates; per round %s)",
			medians["smxd"]/medians["postfix"], strings.Join(per, " ")))
	}
	if loadMin >= 0 {
		line := fmt.Sprintf("relaybench: load average %.2f-%.2f", loadMin, loadMax)
		if busyMin >= 0 {
			line += fmt.Sprintf(", CPU busy before the runs %.0f%%-%.0f%%", 100*busyMin, 100*busyMax)
		}
		lines = append(lines, line)
	}
	return lines
}

// millis reads loadgen's "12.3ms".
func millis(s string) float64 {
	v, _ := strconv.ParseFloat(strings.TrimSuffix(s, "ms"), 64)
	return v
}
