# CMake toolchain for aarch64 (Graviton) with Debian's cross compiler (crossbuild-essential-arm64) and multiarch
# libraries (libfoo-dev:arm64; tools/install-deps.sh --cross). pkg-config answers for arm64 through Debian's
# <triplet>-pkg-config (or pkg-config on the multiarch .pc directory); programs run through qemu-user (CMAKE_CROSSCOMPILING_EMULATOR: ctest uses it).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
find_program(ND_CROSS_PKG_CONFIG aarch64-linux-gnu-pkg-config)
if(ND_CROSS_PKG_CONFIG)
  set(PKG_CONFIG_EXECUTABLE ${ND_CROSS_PKG_CONFIG} CACHE FILEPATH "pkg-config for aarch64")
else() # plain pkg-config, pointed at the multiarch directory only
  set(ENV{PKG_CONFIG_LIBDIR} "/usr/lib/${CMAKE_LIBRARY_ARCHITECTURE}/pkgconfig:/usr/share/pkgconfig")
endif()
find_program(ND_QEMU_AARCH64 NAMES qemu-aarch64-static qemu-aarch64)
if(ND_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${ND_QEMU_AARCH64})
endif()
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
