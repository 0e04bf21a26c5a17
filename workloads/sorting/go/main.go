package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"
)

const (
	linesFile = "sorted-lines.txt"
	charsFile = "sorted-chars.txt"
)

// splitLines splits on '\n'; a trailing newline does not start an extra empty line.
func splitLines(data []byte) [][]byte {
	if len(data) == 0 {
		return nil
	}
	return bytes.Split(bytes.TrimSuffix(data, []byte{'\n'}), []byte{'\n'})
}

func joinLines(lines [][]byte, capacity int) []byte {
	out := make([]byte, 0, capacity)
	for _, l := range lines {
		out = append(out, l...)
		out = append(out, '\n')
	}
	return out
}

// sortBytes appends the bytes of line in ascending (unsigned) order: a counting sort.
func sortBytes(line []byte, out []byte) []byte {
	var counts [256]int
	for _, b := range line {
		counts[b]++
	}
	for v, c := range counts {
		for ; c > 0; c-- {
			out = append(out, byte(v))
		}
	}
	return out
}

func histogram(lines [][]byte) [256]uint64 {
	var h [256]uint64
	for _, l := range lines {
		for _, b := range l {
			h[b]++
		}
	}
	return h
}

func fnv1a64(data []byte) uint64 {
	hash := uint64(0xcbf29ce484222325)
	for _, b := range data {
		hash ^= uint64(b)
		hash *= 0x00000100000001b3
	}
	return hash
}

func run(input, outdir string) (string, error) {
	if st, err := os.Stat(outdir); err != nil || !st.IsDir() {
		return "", fmt.Errorf("output-dir-missing path=%s", outdir)
	}
	data, err := os.ReadFile(input)
	if err != nil {
		return "", fmt.Errorf("cannot-read-input path=%s error=%v", input, err)
	}
	lines := splitLines(data)

	// Phase 1: sort all lines at once, byte-wise lexicographic.
	sorted := slices.Clone(lines)
	slices.SortFunc(sorted, bytes.Compare)
	linesPath := filepath.Join(outdir, linesFile)
	if err := os.WriteFile(linesPath, joinLines(sorted, len(data)+1), 0o644); err != nil {
		return "", fmt.Errorf("cannot-write path=%s error=%v", linesPath, err)
	}
	sorted = nil

	// Phase 2: one line at a time, sort the bytes of each line (original line order).
	chars := make([]byte, 0, len(data)+1)
	for _, l := range lines {
		chars = sortBytes(l, chars)
		chars = append(chars, '\n')
	}
	charsPath := filepath.Join(outdir, charsFile)
	if err := os.WriteFile(charsPath, chars, 0o644); err != nil {
		return "", fmt.Errorf("cannot-write path=%s error=%v", charsPath, err)
	}
	chars = nil

	// Check what actually landed on disk.
	inputHist := histogram(lines)
	linesOut, err := os.ReadFile(linesPath)
	if err != nil {
		return "", fmt.Errorf("cannot-read-back error=%v", err)
	}
	back := splitLines(linesOut)
	if len(back) != len(lines) {
		return "", fmt.Errorf("line-count-mismatch expected=%d got=%d", len(lines), len(back))
	}
	for i := 1; i < len(back); i++ {
		if bytes.Compare(back[i-1], back[i]) > 0 {
			return "", fmt.Errorf("lines-not-sorted at=%d", i)
		}
	}
	if histogram(back) != inputHist {
		return "", fmt.Errorf("lines-byte-multiset-differs")
	}

	charsOut, err := os.ReadFile(charsPath)
	if err != nil {
		return "", fmt.Errorf("cannot-read-back error=%v", err)
	}
	backChars := splitLines(charsOut)
	if len(backChars) != len(lines) {
		return "", fmt.Errorf("chars-line-count-mismatch expected=%d got=%d", len(lines), len(backChars))
	}
	for i, got := range backChars {
		if len(got) != len(lines[i]) {
			return "", fmt.Errorf("chars-not-sorted line=%d", i+1)
		}
		for j := 1; j < len(got); j++ {
			if got[j-1] > got[j] {
				return "", fmt.Errorf("chars-not-sorted line=%d", i+1)
			}
		}
	}
	if histogram(backChars) != inputHist {
		return "", fmt.Errorf("chars-byte-multiset-differs")
	}

	return fmt.Sprintf("lines=%d bytes=%d checksum=%016x", len(lines), len(linesOut), fnv1a64(linesOut)), nil
}

func main() {
	// os.Stdout is unbuffered in Go, so the line is written out immediately.
	fmt.Printf("PIPELINE_MAIN_START_NS=%d\n", time.Now().UnixNano())

	var details string
	var err error
	if len(os.Args) != 3 {
		err = fmt.Errorf("usage=sorting-INPUT-OUTDIR")
	} else {
		details, err = run(os.Args[1], os.Args[2])
	}
	if err != nil {
		fmt.Printf("PIPELINE_RESULT status=fail reason=%v\n", err)
		os.Exit(1)
	}
	fmt.Printf("PIPELINE_RESULT status=ok %s\n", details)
}
