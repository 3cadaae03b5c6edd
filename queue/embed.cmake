# cmake -DIN=file -DOUT=file -P embed.cmake: IN's text as a C++ raw string.
file(READ ${IN} TEXT)
file(WRITE ${OUT} "R\"yardlua(${TEXT})yardlua\"\n")
