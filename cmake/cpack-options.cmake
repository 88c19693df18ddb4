# cpack-options.cmake - checked when cpack runs (CPACK_PROJECT_CONFIG_FILE): a .deb
# built from a /usr/local configuration would put the configuration in /usr/local/etc
# and the queue in /usr/local/var, which no Debian system expects.
if(CPACK_GENERATOR STREQUAL "DEB" AND NOT CPACK_PACKAGING_INSTALL_PREFIX STREQUAL "/usr")
  message(FATAL_ERROR "cpack -G DEB: this build is configured for "
          "${CPACK_PACKAGING_INSTALL_PREFIX}; configure one with -DCMAKE_INSTALL_PREFIX=/usr "
          "(see cmake/install.cmake)")
endif()
