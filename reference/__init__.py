"""Reference semantics: containers, learned bitlengths, BitWave, Gecko and footprint."""
