# install.cmake - `cmake --install` and CPack's .deb (included at the end of CMakeLists.txt).
#
# FHS places from GNUInstallDirs: programs in sbin, the configuration in
# MTA_SYSCONFDIR/mtad.conf (/etc/mta: where the programs look without -c), the systemd unit in lib/systemd/system, man pages, a logrotate
# file, the documentation. Every path written into an installed file (the unit's
# ExecStart=, the configuration's data_volume, the man pages) comes from the same
# variables, so the files agree with the prefix. A Debian package wants
# -DCMAKE_INSTALL_PREFIX=/usr (then /etc/mta, /var/spool/mta, /var/log/mta):
#   cmake -S . -B build-deb -DCMAKE_INSTALL_PREFIX=/usr -DBUILD_TESTING=OFF
#   cmake --build build-deb && (cd build-deb && cpack -G DEB)
# The queue and log directories are not in the package: its postinst creates them for
# the account mta, and so dpkg never removes them (packaging/postrm).
include(GNUInstallDirs)

file(STRINGS ${CMAKE_SOURCE_DIR}/src/mtad.c MTA_VERSION_LINE REGEX "^#define MTAD_VERSION \"")
string(REGEX REPLACE ".*\"([^\"]+)\".*" "\\1" MTA_VERSION "${MTA_VERSION_LINE}")
set(MTA_SYSTEMD_UNITDIR "lib/systemd/system" CACHE STRING
    "Where the systemd unit goes (relative: under CMAKE_INSTALL_PREFIX)")
if(IS_ABSOLUTE "${MTA_SYSTEMD_UNITDIR}")
  set(MTA_UNIT_DIR "${MTA_SYSTEMD_UNITDIR}")
else()
  set(MTA_UNIT_DIR "${CMAKE_INSTALL_PREFIX}/${MTA_SYSTEMD_UNITDIR}")
endif()
set(MTA_SBIN_DIR "${CMAKE_INSTALL_FULL_SBINDIR}")
# where the programs look without -c (MTA_SYSCONFDIR, CMakeLists.txt; default /etc/mta)
set(MTA_CONF_DIR "${MTA_SYSCONFDIR}")
set(MTA_CONF_FILE "${MTA_CONF_DIR}/mtad.conf")
set(MTA_LOGROTATE_FILE "${CMAKE_INSTALL_FULL_SYSCONFDIR}/logrotate.d/mta")
set(MTA_SPOOL_DIR "${CMAKE_INSTALL_FULL_LOCALSTATEDIR}/spool/mta")
set(MTA_LOG_DIR "${CMAKE_INSTALL_FULL_LOCALSTATEDIR}/log/mta")
set(MTA_UNIT_FILE "${MTA_UNIT_DIR}/mtad.service")
string(TIMESTAMP MTA_MAN_DATE "%Y-%m-%d" UTC) # honours SOURCE_DATE_EPOCH

set(MTA_PKG_DIR ${CMAKE_BINARY_DIR}/packaging)
configure_file(etc/mtad.conf.in ${MTA_PKG_DIR}/mtad.conf @ONLY)
configure_file(etc/mta.logrotate.in ${MTA_PKG_DIR}/mta.logrotate @ONLY)
foreach(script postinst prerm postrm conffiles)
  configure_file(packaging/${script}.in ${MTA_PKG_DIR}/${script} @ONLY)
endforeach()

# etc/mtad.service names the Debian paths (it is usable as it is); the installed copy
# names this build's
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/etc/mtad.service)
file(READ ${CMAKE_SOURCE_DIR}/etc/mtad.service mta_unit)
set(mta_unit_from /usr/sbin/mtad /etc/mta/mtad.conf ReadWritePaths=/var/spool/mta)
set(mta_unit_to ${MTA_SBIN_DIR}/mtad ${MTA_CONF_FILE} ReadWritePaths=${MTA_SPOOL_DIR})
foreach(from to IN ZIP_LISTS mta_unit_from mta_unit_to)
  string(FIND "${mta_unit}" "${from}" at)
  if(at EQUAL -1)
    message(WARNING "etc/mtad.service no longer contains '${from}': check cmake/install.cmake")
  endif()
  string(REPLACE "${from}" "${to}" mta_unit "${mta_unit}")
endforeach()
if(NOT MTA_LOG_DIR STREQUAL "/var/log/mta")
  # LogsDirectory= is always under /var/log
  string(REPLACE "LogsDirectory=mta" "ReadWritePaths=-${MTA_LOG_DIR}" mta_unit "${mta_unit}")
endif()
file(CONFIGURE OUTPUT ${MTA_PKG_DIR}/mtad.service CONTENT "${mta_unit}" @ONLY)

# man pages: paths filled in now, the settings list of mtad.conf(5) from the built mtactl
find_program(MTA_GZIP gzip)
set(mta_man_out "")
foreach(page mtad.8 mtactl.8 mtad.conf.5 postqueue.1 postsuper.1 sendmail.1)
  configure_file(man/${page}.in ${CMAKE_BINARY_DIR}/man/${page}.in @ONLY)
  set(out ${CMAKE_BINARY_DIR}/man/${page})
  if(MTA_GZIP)
    set(out ${out}.gz)
  endif()
  set(extra "")
  set(deps ${CMAKE_BINARY_DIR}/man/${page}.in ${CMAKE_SOURCE_DIR}/cmake/man.cmake)
  if(page STREQUAL "mtad.conf.5")
    set(extra -DMTACTL=$<TARGET_FILE:mtactl>)
    list(APPEND deps mtactl)
  endif()
  add_custom_command(OUTPUT ${out}
    COMMAND ${CMAKE_COMMAND} -DIN=${CMAKE_BINARY_DIR}/man/${page}.in -DOUT=${out}
            -DGZIP=${MTA_GZIP} ${extra} -P ${CMAKE_SOURCE_DIR}/cmake/man.cmake
    DEPENDS ${deps}
    COMMENT "Man page ${page}" VERBATIM)
  string(REGEX REPLACE ".*\\.([0-9])$" "\\1" section "${page}")
  install(FILES ${out} DESTINATION ${CMAKE_INSTALL_MANDIR}/man${section})
  list(APPEND mta_man_out ${out})
endforeach()
add_custom_target(man ALL DEPENDS ${mta_man_out})

install(TARGETS mtad mtactl RUNTIME DESTINATION ${CMAKE_INSTALL_SBINDIR})
# the Postfix/Sendmail commands (docs/sendmail.md) in /usr/sbin, where programs look for
# sendmail; postdrop and postqueue become setgid setgid_group in packaging/postinst
# (dpkg-statoverride), as install cannot give a group that may not exist yet
install(TARGETS sendmail postdrop postqueue postsuper RUNTIME DESTINATION ${CMAKE_INSTALL_SBINDIR})
# mailq and newaliases are sendmail under other names, in /usr/bin as Debian's postfix has
# them, and /usr/lib/sendmail for old scripts; relative links, created at install time
# (DESTDIR and CPack's staging directory alike)
file(RELATIVE_PATH mta_bin_sendmail ${CMAKE_INSTALL_FULL_BINDIR} ${MTA_SBIN_DIR}/sendmail)
file(RELATIVE_PATH mta_lib_sendmail ${CMAKE_INSTALL_PREFIX}/lib ${MTA_SBIN_DIR}/sendmail)
install(CODE "
  set(mta_root \"\$ENV{DESTDIR}\${CMAKE_INSTALL_PREFIX}\")
  file(MAKE_DIRECTORY \"\${mta_root}/${CMAKE_INSTALL_BINDIR}\" \"\${mta_root}/lib\")
  foreach(mta_link ${CMAKE_INSTALL_BINDIR}/mailq ${CMAKE_INSTALL_BINDIR}/newaliases lib/sendmail)
    if(mta_link MATCHES \"^lib/\")
      set(mta_to \"${mta_lib_sendmail}\")
    else()
      set(mta_to \"${mta_bin_sendmail}\")
    endif()
    message(STATUS \"Installing: \${mta_root}/\${mta_link} -> \${mta_to}\")
    file(REMOVE \"\${mta_root}/\${mta_link}\")
    file(CREATE_LINK \"\${mta_to}\" \"\${mta_root}/\${mta_link}\" SYMBOLIC)
  endforeach()")
# the configuration may hold the web UI's password: root's only (mtad reads it as root)
install(FILES ${MTA_PKG_DIR}/mtad.conf DESTINATION ${MTA_CONF_DIR}
        PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ)
install(FILES ${MTA_PKG_DIR}/mta.logrotate DESTINATION ${CMAKE_INSTALL_FULL_SYSCONFDIR}/logrotate.d
        RENAME mta)
install(FILES ${MTA_PKG_DIR}/mtad.service DESTINATION ${MTA_UNIT_DIR})
install(FILES README.md docs/configuration.md docs/delivery.md docs/http.md docs/logging.md
              docs/security.md docs/spool-format.md docs/sendmail.md
        DESTINATION ${CMAKE_INSTALL_DOCDIR})

# ---- CPack: cpack -G DEB in the build directory ----
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME mta)
set(CPACK_PACKAGE_VERSION ${MTA_VERSION})
set(MTA_PACKAGE_CONTACT "mta maintainers <postmaster@localhost>" CACHE STRING
    "Maintainer: field of the .deb")
set(CPACK_PACKAGE_CONTACT "${MTA_PACKAGE_CONTACT}")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "SMTP mail relay with Postfix's behaviour and mail log")
string(CONCAT CPACK_PACKAGE_DESCRIPTION
    "mtad is an event-driven SMTP relay (libevent, OpenSSL, Cyrus SASL, c-ares) with\n"
    "Postfix-compatible replies, settings and mail log, a durable spool with group\n"
    "commit, a web dashboard, a JSON API and Prometheus metrics. mtactl administers it.\n"
    "The package creates the account mta and the queue. It enables no service.")
set(CPACK_STRIP_FILES ON) # the debug info stays in the build directory
# the package holds exactly what `cmake --install` puts under this prefix
set(CPACK_PACKAGING_INSTALL_PREFIX "${CMAKE_INSTALL_PREFIX}")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION mail)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON) # Depends: from dpkg-shlibdeps
# useradd in postinst; libopendkim (the DKIM signer) is linked, so dpkg-shlibdeps finds it too
set(CPACK_DEBIAN_PACKAGE_DEPENDS "passwd, libopendkim11")
# Debian policy 11.6 for a mail transport agent: one at a time, replacing the other
set(CPACK_DEBIAN_PACKAGE_PROVIDES "mail-transport-agent")
set(CPACK_DEBIAN_PACKAGE_CONFLICTS "mail-transport-agent")
set(CPACK_DEBIAN_PACKAGE_REPLACES "mail-transport-agent")
# SASL mechanisms are plugins; the log share (libsmbclient) and the fs terminal (libnfs)
# are dlopen'ed only when configured, so dpkg-shlibdeps cannot see them
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "libsasl2-modules, logrotate")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "libsmbclient, libnfs13")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${MTA_PKG_DIR}/conffiles ${MTA_PKG_DIR}/postinst ${MTA_PKG_DIR}/prerm ${MTA_PKG_DIR}/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_PROJECT_CONFIG_FILE ${CMAKE_SOURCE_DIR}/cmake/cpack-options.cmake)
set(CPACK_SOURCE_IGNORE_FILES "/\\\\.git/" "/build[^/]*/" "/var/" "__pycache__")
include(CPack)
