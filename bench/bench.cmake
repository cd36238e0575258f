# Benchmark helpers: built with everything, run only by bench/backup.
add_executable(ferry-cpubound bench/cpubound.c)
target_link_libraries(ferry-cpubound PRIVATE ferry_image)
# NBD read throughput against nbdcopy: run by bench/nbd.
add_executable(ferry-nbdread bench/nbdread.c)
target_link_libraries(ferry-nbdread PRIVATE ferry_nbd)
# san (VMFS6) read throughput against fio on the same LUN image: bench/san.
add_executable(ferry-sanread bench/sanread.c)
target_link_libraries(ferry-sanread PRIVATE ferry_san)
