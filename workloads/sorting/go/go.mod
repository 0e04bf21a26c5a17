module sorting

go 1.21
