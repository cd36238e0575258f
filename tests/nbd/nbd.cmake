# NBD transport tests (nbd/). Included by tests/CMakeLists.txt, so paths
# are relative to tests/. Everything is labelled "nbd":
#   ctest -L nbd
#
# nbd.unit: the reply parser, URIs and config keys, no sockets.
# The others run nbd_probe (a small client built on ferry_nbd) against
# real servers that a shell script starts on Unix sockets or random
# loopback ports in a temporary directory and always stops again.

function(ferry_nbd_test name)
  add_executable(${name} nbd/${name}.c)
  target_link_libraries(${name} PRIVATE ${ARGN})
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
endfunction()

ferry_nbd_test(test_nbd_unit ferry_nbd)
add_test(NAME nbd.unit COMMAND test_nbd_unit)
set_tests_properties(nbd.unit PROPERTIES LABELS "nbd;unit" TIMEOUT 60)

ferry_nbd_test(nbd_probe ferry_nbd)

find_program(NBDKIT_PROGRAM nbdkit)
find_program(QEMU_NBD_PROGRAM qemu-nbd)
find_program(OPENSSL_PROGRAM openssl)
find_program(PYTHON3_PROGRAM python3)

# ferry_nbd_script(name script): tests/nbd/script run with the probe,
# the tools and a scratch directory; exit 77 means a tool is missing.
function(ferry_nbd_script name script)
  add_test(NAME nbd.${name}
    COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/nbd/${script})
  set_tests_properties(nbd.${name} PROPERTIES
    LABELS nbd
    TIMEOUT 120
    SKIP_RETURN_CODE 77
    ENVIRONMENT "NBD_PROBE=$<TARGET_FILE:nbd_probe>;NBD_TESTS=${CMAKE_CURRENT_SOURCE_DIR}/nbd;NBDKIT=${NBDKIT_PROGRAM};QEMU_NBD=${QEMU_NBD_PROGRAM};OPENSSL=${OPENSSL_PROGRAM};PYTHON3=${PYTHON3_PROGRAM}")
endfunction()

ferry_nbd_script(nbdkit test_nbdkit.sh)
ferry_nbd_script(tls test_tls.sh)
ferry_nbd_script(qemu test_qemu.sh)
ferry_nbd_script(reconnect test_reconnect.sh)
ferry_nbd_script(hostile test_hostile.sh)
