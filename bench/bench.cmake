# Benchmark helpers: built with everything, run only by bench/backup.
add_executable(ferry-cpubound bench/cpubound.c)
target_link_libraries(ferry-cpubound PRIVATE ferry_image)
