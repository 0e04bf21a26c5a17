package main

import (
	"fmt"
	"os"
	"time"
)

const (
	n    = 100
	seed = uint64(0x5EED)
)

// splitMix64 is the same generator in every language, in wrapping u64 arithmetic.
type splitMix64 struct{ state uint64 }

func (s *splitMix64) next() uint64 {
	s.state += 0x9E3779B97F4A7C15
	z := s.state
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	return z ^ (z >> 31)
}

func main() {
	// os.Stdout is unbuffered in Go, so the line is written out immediately.
	fmt.Printf("PIPELINE_MAIN_START_NS=%d\n", time.Now().UnixNano())

	// Entries are k/8 with k in 0..1000: every product is a multiple of 1/64 and every
	// partial sum stays far below 2^47, so all arithmetic is exact in f64. The sum is
	// therefore bit-identical across languages and architectures, FMA fusion or not.
	rng := splitMix64{seed}
	a := make([]float64, n*n)
	b := make([]float64, n*n)
	c := make([]float64, n*n)
	for i := range a {
		a[i] = float64(rng.next()%1000) / 8.0
	}
	for i := range b {
		b[i] = float64(rng.next()%1000) / 8.0
	}

	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			acc := 0.0
			for k := 0; k < n; k++ {
				acc += a[i*n+k] * b[k*n+j]
			}
			c[i*n+j] = acc
		}
	}
	sum := 0.0
	for _, v := range c {
		sum += v
	}

	// Independent check: sum(A*B) = sum_k colsum_A[k] * rowsum_B[k].
	check := 0.0
	for k := 0; k < n; k++ {
		colA, rowB := 0.0, 0.0
		for i := 0; i < n; i++ {
			colA += a[i*n+k]
		}
		for j := 0; j < n; j++ {
			rowB += b[k*n+j]
		}
		check += colA * rowB
	}

	if sum != check {
		fmt.Printf("PIPELINE_RESULT status=fail reason=checksum-mismatch sum=%.3f check=%.3f\n", sum, check)
		os.Exit(1)
	}
	fmt.Printf("PIPELINE_RESULT status=ok sum=%.3f n=%d\n", sum, n)
}
