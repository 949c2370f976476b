//! OSL: the OpenSet scripting language (front end, compiler, interpreter).
