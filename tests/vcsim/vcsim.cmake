# ferry-vcsim: govmomi's vCenter simulator with the calls a backup proxy
# needs added on top (docs/VCSIM.md). Included by tests/CMakeLists.txt, so
# paths are relative to tests/. Built offline from Debian's Go packages
# (golang-go, golang-github-vmware-govmomi-dev) into bin/ferry-vcsim; the
# tests are labelled "vcsim":
#   ctest -L vcsim

find_program(GO_PROGRAM go)
set(FERRY_GOVMOMI_DIR /usr/share/gocode/src/github.com/vmware/govmomi)
if(NOT GO_PROGRAM OR NOT EXISTS ${FERRY_GOVMOMI_DIR}/simulator/simulator.go)
  message(STATUS "ferry-vcsim: go or govmomi sources not found; not building it (scripts/deps installs them)")
  return()
endif()

file(GLOB FERRY_VCSIM_SOURCES CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/vcsim/*.go)
set(FERRY_VCSIM ${CMAKE_BINARY_DIR}/bin/ferry-vcsim)
# No modules and no network: the packages come from /usr/share/gocode. The
# cache lives in the build tree so rebuilds take a second or two.
set(FERRY_GO_ENV
  GOPATH=/usr/share/gocode GO111MODULE=off GOFLAGS= GOPROXY=off
  GOCACHE=${CMAKE_BINARY_DIR}/gocache)

add_custom_command(
  OUTPUT ${FERRY_VCSIM}
  COMMAND ${CMAKE_COMMAND} -E env ${FERRY_GO_ENV}
          ${GO_PROGRAM} build -buildvcs=false -o ${FERRY_VCSIM} .
  DEPENDS ${FERRY_VCSIM_SOURCES}
  WORKING_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR}/vcsim
  COMMENT "Building ferry-vcsim (Go, govmomi simulator)"
  VERBATIM)
add_custom_target(ferry-vcsim ALL DEPENDS ${FERRY_VCSIM})

add_test(NAME vcsim.vet
  COMMAND ${CMAKE_COMMAND} -E env ${FERRY_GO_ENV} ${GO_PROGRAM} vet .
  WORKING_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR}/vcsim)
set_tests_properties(vcsim.vet PROPERTIES LABELS vcsim TIMEOUT 120)

# ferry_vcsim_test(name): tests/vcsim/name.sh against a fresh ferry-vcsim;
# exit 77 means curl or python3 is missing.
function(ferry_vcsim_test name)
  add_test(NAME vcsim.${name}
    COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/vcsim/${name}.sh)
  set_tests_properties(vcsim.${name} PROPERTIES
    LABELS vcsim
    TIMEOUT 120
    SKIP_RETURN_CODE 77
    ENVIRONMENT "VCSIM=${FERRY_VCSIM}")
endfunction()

ferry_vcsim_test(smoke)
ferry_vcsim_test(hotadd)
ferry_vcsim_test(control)
ferry_vcsim_test(esx)

# ferry_vcsim_fixture(name [flags...]): a ferry-vcsim shared by the tests
# that require the ctest fixture vcsim_<name>. Its ready file is
# ${FERRY_VCSIM_FIXTURE_DIR}/<name>/ready.json. For example:
#   ferry_vcsim_fixture(client)
#   set_tests_properties(vsphere.login PROPERTIES
#     FIXTURES_REQUIRED vcsim_client
#     ENVIRONMENT "VCSIM_READY=${FERRY_VCSIM_FIXTURE_DIR}/client/ready.json")
# Tests that change the inventory (snapshots, CBT, hot-add) should rather
# start their own ferry-vcsim, so they do not see each other's state.
set(FERRY_VCSIM_FIXTURE_DIR ${CMAKE_BINARY_DIR}/vcsim-fixtures)
function(ferry_vcsim_fixture name)
  set(dir ${FERRY_VCSIM_FIXTURE_DIR}/${name})
  add_test(NAME vcsim.fixture.${name}.start
    COMMAND bash ${CMAKE_CURRENT_FUNCTION_LIST_DIR}/fixture.sh start ${dir} ${ARGN})
  add_test(NAME vcsim.fixture.${name}.stop
    COMMAND bash ${CMAKE_CURRENT_FUNCTION_LIST_DIR}/fixture.sh stop ${dir})
  set_tests_properties(vcsim.fixture.${name}.start PROPERTIES
    FIXTURES_SETUP vcsim_${name} LABELS vcsim TIMEOUT 60
    ENVIRONMENT "VCSIM=${FERRY_VCSIM}")
  set_tests_properties(vcsim.fixture.${name}.stop PROPERTIES
    FIXTURES_CLEANUP vcsim_${name} LABELS vcsim TIMEOUT 60
    ENVIRONMENT "VCSIM=${FERRY_VCSIM}")
endfunction()

# The fixture machinery itself: a shared simulator that a test reaches
# through the ready file alone.
ferry_vcsim_fixture(selftest)
add_test(NAME vcsim.fixture_user
  COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/vcsim/fixture_user.sh)
set_tests_properties(vcsim.fixture_user PROPERTIES
  LABELS vcsim TIMEOUT 60 SKIP_RETURN_CODE 77
  FIXTURES_REQUIRED vcsim_selftest
  ENVIRONMENT "VCSIM_READY=${FERRY_VCSIM_FIXTURE_DIR}/selftest/ready.json")
