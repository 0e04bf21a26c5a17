module matrix-multiplication

go 1.21
