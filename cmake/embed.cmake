# Writes OUT, a C file holding the dashboard's files (FILES, a ;-list of
# paths under DIR) as byte arrays, so spated serves them without reading disk.
# Run as: cmake -DDIR=... -DOUT=... -DFILES=a;b -P embed.cmake
set(body "/* Generated from web/ by cmake/embed.cmake; do not edit. */\n#include \"api/assets.h\"\n\n")
set(table "")
set(i 0)
foreach(f ${FILES})
  file(READ "${DIR}/${f}" hex HEX)
  string(LENGTH "${hex}" hexlen)
  math(EXPR size "${hexlen} / 2")
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
  string(REGEX REPLACE "(0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,)" "\\1\n" bytes "${bytes}")
  string(APPEND body "static const unsigned char asset${i}[] = {\n${bytes}0};\n")
  string(APPEND table "    {\"${f}\", asset${i}, ${size}},\n")
  math(EXPR i "${i} + 1")
endforeach()
string(APPEND body "\nconst web_asset web_assets[] = {\n${table}    {0, 0, 0},\n};\n")
file(WRITE "${OUT}.tmp" "${body}")
execute_process(COMMAND ${CMAKE_COMMAND} -E copy_if_different "${OUT}.tmp" "${OUT}")
