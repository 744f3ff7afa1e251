insert into t (k, v) select md5(random()::text), '\x0102030405060708090a0b0c0d0e0f10' from generate_series(1, 100);
