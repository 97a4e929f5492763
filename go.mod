module nixpki

go 1.26
