insert into t (k, v) values (md5(random()::text), '\x0102030405060708090a0b0c0d0e0f10');
