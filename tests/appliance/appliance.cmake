# The proxy appliance (docs/APPLIANCE.md).
#
# Label appliance: `ferry-agent ovf-env` against good and broken OVF
# environments; needs only the build.
# Label ova: tests of the built .ova (scripts/appliance makes it first;
# scripts/test runs them after it): its structure as vSphere reads it, and
# the appliance booted in QEMU (TCG). A missing .ova fails them, it never
# skips them.
set(FERRY_OVA ${CMAKE_SOURCE_DIR}/build-appliance/ferry-proxy-${PROJECT_VERSION}.ova)

add_test(NAME appliance.ovf_env
  COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/appliance/ovf_env.sh ${CMAKE_BINARY_DIR}/bin)
set_tests_properties(appliance.ovf_env PROPERTIES LABELS appliance TIMEOUT 120)

add_test(NAME ova.structure
  COMMAND python3 ${CMAKE_CURRENT_SOURCE_DIR}/appliance/check_ova.py ${FERRY_OVA})
set_tests_properties(ova.structure PROPERTIES LABELS ova TIMEOUT 300)

# One boot serves the status, backup and restore checks; the reset case
# reboots once more. Needs root, qemu-system-x86_64 and ferry-vcsim.
add_test(NAME ova.guest
  COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/appliance/guest.sh ${FERRY_OVA} ${CMAKE_BINARY_DIR}/bin --reset)
set_tests_properties(ova.guest PROPERTIES LABELS ova TIMEOUT 1500)

# The first-boot unit run from the .ova's own root file system (chroot on a
# copy): the guestinfo transport through a stand-in vmtoolsd, the banner of
# a broken and of a missing environment. Needs root, loop devices, qemu-img.
add_test(NAME ova.setup
  COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/appliance/setup.sh ${FERRY_OVA} ${CMAKE_BINARY_DIR}/bin)
set_tests_properties(ova.setup PROPERTIES LABELS ova TIMEOUT 300)
