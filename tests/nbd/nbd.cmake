# NBD transport tests (nbd/ work)
