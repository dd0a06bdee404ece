package main

import (
	"math"
	"math/bits"
	"time"
)

// histogram is a log-linear latency histogram in nanoseconds, in the
// manner of HdrHistogram: values below 2^subBits are exact; above, each
// power of two is split into 2^(subBits-1) equal buckets, so a recorded
// value is off by at most 1/2^(subBits-1) (0.8 % with subBits 8). It is not
// safe for concurrent use: each worker records into its own and the
// results are merged.
type histogram struct {
	counts [histBuckets]uint64
	n      uint64
	sum    float64
	min    int64
	max    int64
}

const (
	subBits     = 8
	subCount    = 1 << subBits // exact values below this
	halfCount   = subCount / 2
	maxExponent = 42 // values up to 2^(42+subBits-1) ns (~36 min) are kept; larger ones are clamped
	histBuckets = subCount + maxExponent*halfCount
)

// bucketOf returns the bucket index of v (v >= 0).
func bucketOf(v int64) int {
	if v < subCount {
		return int(v)
	}
	e := bits.Len64(uint64(v)) - subBits // >= 1: v>>e is in [halfCount, subCount)
	if e > maxExponent {
		return histBuckets - 1
	}
	return subCount + (e-1)*halfCount + int(v>>uint(e)) - halfCount
}

// bucketRange returns the smallest and largest value bucket i holds.
func bucketRange(i int) (lo, hi int64) {
	if i < subCount {
		return int64(i), int64(i)
	}
	e := (i-subCount)/halfCount + 1
	m := int64((i-subCount)%halfCount + halfCount)
	return m << uint(e), (m+1)<<uint(e) - 1
}

func (h *histogram) record(d time.Duration) {
	v := int64(d)
	if v < 0 {
		v = 0
	}
	h.counts[bucketOf(v)]++
	if h.n == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.n++
	h.sum += float64(v)
}

func (h *histogram) merge(o *histogram) {
	if o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	if o.max > h.max {
		h.max = o.max
	}
	h.n += o.n
	h.sum += o.sum
}

// quantile returns the value at quantile q (0 < q <= 1): the middle of the
// bucket holding the ceil(q*n)-th smallest value, clamped to [min, max].
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			lo, hi := bucketRange(i)
			v := lo + (hi-lo)/2
			v = max(v, h.min)
			v = min(v, h.max)
			return time.Duration(v)
		}
	}
	return time.Duration(h.max)
}

func (h *histogram) mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum / float64(h.n))
}
