module spnkit.bench/maxspn_go

go 1.19

require github.com/shtechair/maxspn v0.0.0

replace github.com/shtechair/maxspn => ./maxspn_src
