-- Differential corpus: every statement runs through the proxy and directly against the
-- primary, in the text protocol (COM_QUERY) and the binary protocol (COM_STMT_PREPARE +
-- COM_STMT_EXECUTE), and the outcomes must be identical.
--
-- Format: a statement ends at a line whose last character is `;` (the `;` is dropped, so
-- `SELECT 1; SELECT 2;` on one line is a multi-statement). Lines starting with `--` outside a
-- statement are comments, except directives:
--   -- params: 1, 'abc', NULL, 2.5, x'00ff'   placeholders `?` of the next statement; the text
--                                              run inlines them, the binary run binds them.
--   -- text-only / -- binary-only              the next statement runs in one protocol only.
--   -- reconnect                               fresh connections on both sides (a session that
--                                              pinned itself to the primary no longer does).
-- Nothing here may reveal routing (@@server_id, @@hostname, @@port, CONNECTION_ID(), ...)
-- or be time-dependent (NOW(), RAND(), UUID()).

-- ---------------------------------------------------------------- DDL
DROP TABLE IF EXISTS nums;
CREATE TABLE nums (
  id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, siu SMALLINT UNSIGNED,
  mi MEDIUMINT, miu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED,
  bi BIGINT, biu BIGINT UNSIGNED, d DECIMAL(65,30), d2 DECIMAL(10,2),
  f FLOAT, db DOUBLE, b1 BIT(1), b64 BIT(64), bo BOOLEAN, zf INT(6) ZEROFILL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE times (
  id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  dt DATE, t TIME, t6 TIME(6), dtm DATETIME, dtm6 DATETIME(6),
  ts TIMESTAMP NULL DEFAULT NULL, ts6 TIMESTAMP(6) NULL DEFAULT NULL, y YEAR
) ENGINE=InnoDB;
CREATE TABLE strs (
  id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  c CHAR(10), vc VARCHAR(255), tx TEXT, tt TINYTEXT, mt MEDIUMTEXT, lt LONGTEXT,
  bl BLOB, lbl LONGBLOB, bn BINARY(4), vb VARBINARY(16),
  l1 VARCHAR(20) CHARACTER SET latin1, bin_c VARCHAR(20) COLLATE utf8mb4_bin,
  e ENUM('small','medium','large'), s SET('a','b','c','d'),
  j JSON, g GEOMETRY, u CHAR(36) CHARACTER SET ascii,
  UNIQUE KEY uk_vc (vc)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;
CREATE TABLE kv (k VARCHAR(16) NOT NULL PRIMARY KEY, v INT NOT NULL DEFAULT 0, note VARCHAR(5)) DEFAULT CHARSET=utf8mb4;
CREATE TABLE empty_t (a INT, b VARCHAR(3)) DEFAULT CHARSET=utf8mb4;
CREATE INDEX idx_i ON nums (i);
ALTER TABLE kv ADD COLUMN extra DECIMAL(5,1) NULL;
CREATE OR REPLACE VIEW v_nums AS SELECT id, i, d2 * 2 AS d2x2 FROM nums;
CREATE TABLE IF NOT EXISTS kv (k INT);
CREATE TABLE kv (k INT);
DROP TABLE no_such_table;
DROP TABLE IF EXISTS no_such_table;
-- Before any DML: a replica's AUTO_INCREMENT counter legitimately lags the primary's after
-- failed inserts (they burn values only on the primary), and SHOW CREATE TABLE prints it.
SHOW CREATE TABLE strs;
SHOW CREATE TABLE kv;
SHOW CREATE VIEW v_nums;

-- ---------------------------------------------------------------- DML
INSERT INTO nums (ti, tiu, si, siu, mi, miu, i, iu, bi, biu, d, d2, f, db, b1, b64, bo, zf) VALUES
  (-128, 0, -32768, 0, -8388608, 0, -2147483648, 0, -9223372036854775808, 0,
   '-99999999999999999999999999999999999.999999999999999999999999999999', -12345678.99,
   -3.4e38, -1.7976931348623157e308, b'0', b'0', FALSE, 1),
  (127, 255, 32767, 65535, 8388607, 16777215, 2147483647, 4294967295, 9223372036854775807, 18446744073709551615,
   '99999999999999999999999999999999999.999999999999999999999999999999', 12345678.99,
   3.4e38, 1.7976931348623157e308, b'1', b'1111111111111111111111111111111111111111111111111111111111111111', TRUE, 999999),
  (0, 1, 0, 1, 0, 1, 0, 1, 0, 1, '0.000000000000000000000000000001', 0.01, 1.1754944e-38, 2.2250738585072014e-308, b'1', b'1010', 1, 42),
  (NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
INSERT INTO nums (i, d2, f, db) VALUES (1, 1.5, 0.1, 0.1), (2, 2.25, 1.0e-10, 123456789.123456789), (3, 3.125, 3.14159, -0.0);
INSERT INTO times (dt, t, t6, dtm, dtm6, ts, ts6, y) VALUES
  ('1000-01-01', '-838:59:59', '-838:59:59.000000', '1000-01-01 00:00:00', '1000-01-01 00:00:00.000000', '1970-01-02 00:00:01', '1970-01-02 00:00:01.000001', 1901),
  ('9999-12-31', '838:59:59', '838:59:59.000000', '9999-12-31 23:59:59', '9999-12-31 23:59:59.999999', '2038-01-19 03:14:07', '2038-01-19 03:14:07.999999', 2155),
  ('2024-02-29', '12:34:56', '00:00:00.123456', '2024-02-29 12:34:56', '2024-02-29 12:34:56.654321', '2024-02-29 12:34:56', '2024-02-29 12:34:56.5', 2024),
  ('0000-00-00', '00:00:00', '-00:00:00.000001', '0000-00-00 00:00:00', '2000-01-01 00:00:00.000000', NULL, NULL, 0),
  (NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
INSERT INTO strs (c, vc, tx, tt, mt, lt, bl, lbl, bn, vb, l1, bin_c, e, s, j, g, u) VALUES
  ('abc', 'hello world', 'some text', 'tiny', 'medium', 'long', x'00010203ff', x'deadbeef', x'01', x'0001', 'café', 'Bin', 'small', 'a,c', '{"a": 1, "b": [1, 2, {"c": null}], "d": "x"}', ST_GeomFromText('POINT(1 2)'), '123e4567-e89b-12d3-a456-426614174000'),
  ('😀🎉', 'emoji 😀 ünïcödé ✓ 中文 🏳️‍🌈', '𝔘𝔫𝔦𝔠𝔬𝔡𝔢', '', '', '', '', '', x'00000000', '', 'naïve', 'bin', 'large', '', '[]', ST_GeomFromText('LINESTRING(0 0, 1 1, 2 3)'), ''),
  ('', '', '', '', '', '', NULL, NULL, NULL, NULL, '', '', 'medium', 'a,b,c,d', '{}', ST_GeomFromText('POLYGON((0 0, 4 0, 4 4, 0 4, 0 0))'), NULL),
  (NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
INSERT INTO strs (vc, lbl, lt) VALUES ('big', REPEAT(x'00ff10', 100000), REPEAT('long text 😀 ', 20000));
INSERT INTO kv (k, v) VALUES ('a', 1), ('b', 2), ('c', 3);
INSERT INTO kv (k, v) VALUES ('a', 10);
INSERT INTO kv (k, v) VALUES ('a', 10) ON DUPLICATE KEY UPDATE v = v + VALUES(v);
INSERT IGNORE INTO kv (k, v) VALUES ('b', 20), ('d', 4);
REPLACE INTO kv (k, v) VALUES ('c', 30);
UPDATE kv SET v = v + 1 WHERE k IN ('a', 'b');
UPDATE kv SET v = v WHERE k = 'a';
UPDATE kv SET v = 0 WHERE k = 'nope';
DELETE FROM kv WHERE k = 'd';
INSERT INTO kv (k, v) VALUES ('e', 5), ('f', 6), ('g', 7);
DELETE FROM kv WHERE v > 100 ORDER BY k LIMIT 1;
-- params: 'p1', 11
INSERT INTO kv (k, v) VALUES (?, ?);
-- params: 100, 'p1'
UPDATE kv SET v = ? WHERE k = ?;
INSERT INTO nums (i) VALUES (100);
SELECT LAST_INSERT_ID();
INSERT INTO nums (id, i) VALUES (1000, 7);
INSERT INTO nums (i) SELECT i + 1 FROM nums WHERE i BETWEEN 1 AND 3;

-- ---------------------------------------------------------------- SELECTs over every type
SELECT * FROM nums ORDER BY id;
SELECT * FROM times ORDER BY id;
SELECT * FROM strs ORDER BY id;
SELECT id, ST_AsText(g), ST_SRID(g), JSON_EXTRACT(j, '$.b[2]'), JSON_TYPE(j), HEX(bn), LENGTH(lbl), CHAR_LENGTH(vc) FROM strs ORDER BY id;
SELECT * FROM kv ORDER BY k;
SELECT * FROM v_nums ORDER BY id;
SELECT * FROM empty_t;
SELECT a, b FROM empty_t WHERE a > 0;
SELECT * FROM nums WHERE 1 = 0;
SELECT COUNT(*), SUM(i), AVG(d2), MIN(f), MAX(db), GROUP_CONCAT(id ORDER BY id) FROM nums;
SELECT i, COUNT(*) AS n FROM nums GROUP BY i WITH ROLLUP;
SELECT k, v, RANK() OVER (ORDER BY v DESC) AS r, SUM(v) OVER (ORDER BY k) AS running FROM kv ORDER BY k;
SELECT n.id, n.i, k.k FROM nums n LEFT JOIN kv k ON k.v = n.i ORDER BY n.id, k.k;
SELECT * FROM (SELECT 1 AS a UNION ALL SELECT 2 UNION ALL SELECT NULL) t ORDER BY a;
WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < 200) SELECT n, n * n, REPEAT('x', n MOD 7) FROM seq;
SELECT 1, -1, 1.5, -1.5e300, 'str', _binary 'bin', NULL, TRUE, x'41', b'101', 0x7fffffffffffffff;
SELECT 18446744073709551615, -9223372036854775808, 1e-300, 123456789012345678901234567890.123456789;
SELECT CAST(1 AS UNSIGNED), CAST(-1 AS UNSIGNED), CAST('2024-01-01' AS DATE), CAST('12:00:01.5' AS TIME(3)), CAST(3.14159 AS DECIMAL(10,3)), CAST('x' AS BINARY(3));
SELECT DATE '2024-01-31' + INTERVAL 1 MONTH, TIMESTAMP '2024-01-01 00:00:00' - INTERVAL 1 SECOND, TIMEDIFF('10:00:00', '12:30:00.25');
SELECT DATE_FORMAT('2024-03-04 05:06:07', '%Y/%m/%d %H.%i.%s'), STR_TO_DATE('04/03/2024', '%d/%m/%Y'), YEAR('2024-01-01'), DAYNAME('2024-01-01');
SELECT CONCAT('a', NULL), CONCAT_WS(',', 'a', NULL, 'b'), IFNULL(NULL, 'x'), COALESCE(NULL, NULL, 3), NULLIF(1, 1);
SELECT 'ümlaut' = 'umlaut', 'A' = 'a', BINARY 'A' = 'a', _utf8mb4 '😀' COLLATE utf8mb4_bin, UPPER('straße'), LOWER('ÀÉÎ');
SELECT JSON_OBJECT('k', 1, 'e', '😀', 'n', NULL), JSON_ARRAY(1, 'a', 1.5, TRUE), JSON_VALID('{'), JSON_UNQUOTE('"x"');
SELECT ST_AsText(ST_Buffer(POINT(0, 0), 1, 4)) IS NOT NULL, ST_Distance(POINT(0, 0), POINT(3, 4)), ST_AsBinary(POINT(1, 1));
SELECT BIT_COUNT(255), 5 & 3, 5 | 3, 5 ^ 3, ~0, 1 << 63, b'11' + 0;
SELECT 10 DIV 3, 10 MOD 3, -7 / 2, 7 / 3, ROUND(2.5), ROUND(-2.5), TRUNCATE(1.999, 2), POW(2, 0.5), PI();
SELECT id, e, e + 0, s, s + 0, FIND_IN_SET('c', s) FROM strs ORDER BY id;
SELECT id, b1 + 0, b64 + 0, HEX(b64), bo, zf FROM nums ORDER BY id;
SELECT id, t6, dtm6, ts6, y, UNIX_TIMESTAMP(ts) FROM times ORDER BY id;
SELECT REPEAT('a', 70000) AS big_text, LENGTH(REPEAT(x'00', 1 << 20)) AS mb;
SELECT SQL_CALC_FOUND_ROWS * FROM kv ORDER BY k LIMIT 2;
SELECT FOUND_ROWS();
-- reconnect
-- params: 2
SELECT k, v FROM kv WHERE v > ? ORDER BY k;
-- params: 'a', 'zzz', NULL
SELECT k FROM kv WHERE k BETWEEN ? AND ? OR k = ? ORDER BY k;
-- params: 42, -7, 18446744073709551615, 1.25, 'text 😀', x'00ff', NULL
SELECT ? AS i, ? AS neg, ? AS big, ? AS dbl, ? AS s, ? AS b, ? AS n;
-- params: '2024-02-29 12:34:56.5', '838:59:59'
SELECT CAST(? AS DATETIME(6)), CAST(? AS TIME);
SELECT * FROM nums WHERE id = 999999;
SELECT id FROM nums WHERE i IS NULL ORDER BY id;
SELECT * FROM strs WHERE vc LIKE '%😀%';
SELECT DISTINCT e FROM strs ORDER BY e;
EXPLAIN SELECT * FROM nums WHERE i = 1;
DESC nums;
DESCRIBE strs;

-- ---------------------------------------------------------------- warnings
SELECT 1/0;
SHOW WARNINGS;
SHOW COUNT(*) WARNINGS;
SELECT CAST('12abc' AS SIGNED), CAST('xyz' AS DECIMAL(5,2)), CAST(1e30 AS SIGNED);
SHOW WARNINGS;
SELECT CAST(123.456 AS DECIMAL(4,1)), CAST('2024-13-45' AS DATE), CONVERT('abcdef', CHAR(3));
SHOW WARNINGS;
SET SESSION sql_mode = '';
INSERT INTO kv (k, v, note) VALUES ('long', 1, 'way too long for five');
SHOW WARNINGS;
INSERT INTO kv (k, v, note) VALUES ('trunc1', 'not a number', 'ok'), ('trunc2', 99999999999, 'ok');
SHOW WARNINGS;
UPDATE kv SET note = REPEAT('y', 10) WHERE k IN ('a', 'b');
SHOW WARNINGS LIMIT 1;
INSERT INTO nums (ti, tiu, d2) VALUES (1000, -1, 123456789012.345);
SHOW WARNINGS;
SELECT * FROM kv ORDER BY k;
SELECT ti, tiu, d2 FROM nums ORDER BY id DESC LIMIT 1;
SELECT 1 + '1x', 'a' + 0, 1/0, 5 MOD 0;
SHOW WARNINGS;
SHOW ERRORS;
SELECT DATE('2024-02-30');
SELECT JSON_EXTRACT('{bad', '$');
SHOW WARNINGS;

-- ---------------------------------------------------------------- strict mode errors
SET SESSION sql_mode = 'STRICT_ALL_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_ZERO_DATE';
SELECT @@SESSION.sql_mode;
INSERT INTO kv (k, v, note) VALUES ('strict', 1, 'too long for five');
SHOW WARNINGS;
INSERT INTO kv (k, v) VALUES ('div', 1/0);
INSERT INTO times (dt) VALUES ('0000-00-00');
INSERT INTO nums (ti) VALUES (1000);
UPDATE kv SET v = 'abc' WHERE k = 'a';
SET SESSION sql_mode = DEFAULT;
SELECT @@SESSION.sql_mode;

-- ---------------------------------------------------------------- errors
SELEC 1;
SELECT * FROM;
SELECT * FROM no_such_table;
SELECT no_such_column FROM kv;
SELECT * FROM no_such_db.t;
INSERT INTO kv (k, v) VALUES ('a', 1);
INSERT INTO strs (vc) VALUES ('hello world');
INSERT INTO kv (k) VALUES (NULL);
SELECT 1 FROM kv WHERE k = (SELECT k FROM kv);
SELECT JSON_EXTRACT('{}', 'bad path');
SELECT CAST('x' AS no_such_type);
CALL no_such_proc();
SELECT no_such_function(1);
DROP DATABASE no_such_db;
ALTER TABLE kv ADD COLUMN v INT;
SHOW WARNINGS;
SHOW ERRORS;
SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'custom error 😀', MYSQL_ERRNO = 1644;
SELECT 'after errors';

-- ---------------------------------------------------------------- SHOW and friends
SHOW TABLES;
SHOW FULL TABLES;
SHOW COLUMNS FROM kv;
SHOW FULL COLUMNS FROM strs;
SHOW INDEX FROM nums;
SHOW VARIABLES LIKE 'character_set_client';
SHOW VARIABLES LIKE 'collation_connection';
SHOW SESSION VARIABLES LIKE 'sql_mode';
SHOW VARIABLES LIKE 'max_allowed_packet';
SHOW CHARACTER SET LIKE 'utf8mb4';
SHOW COLLATION LIKE 'utf8mb4_bin';
SHOW ENGINES;
SHOW TABLE STATUS LIKE 'no_such%';
SHOW DATABASES LIKE 'no_such%';
SHOW GRANTS;
SHOW PRIVILEGES;
SELECT @@character_set_client, @@character_set_connection, @@character_set_results, @@collation_connection;
SELECT @@autocommit, @@tx_isolation, @@sql_mode, @@time_zone, @@max_allowed_packet, @@version_comment;
SELECT table_name, column_name, data_type, column_type, is_nullable FROM information_schema.columns WHERE table_schema = DATABASE() ORDER BY table_name, ordinal_position;
SELECT DATABASE(), USER() LIKE 'app@%', CURRENT_USER();

-- ---------------------------------------------------------------- session state
SET NAMES latin1;
SELECT 'café', vc FROM strs WHERE id <= 2 ORDER BY id;
SELECT @@character_set_client, @@character_set_results;
SET NAMES utf8mb4 COLLATE utf8mb4_unicode_ci;
SELECT 'café', vc FROM strs WHERE id <= 2 ORDER BY id;
SELECT @@collation_connection;
SET time_zone = '+05:30';
SELECT ts, ts6, UNIX_TIMESTAMP(ts) FROM times ORDER BY id;
SET time_zone = '+00:00';
SELECT ts, ts6 FROM times ORDER BY id;
SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED;
SELECT @@tx_isolation;
SET @uv = 41;
SELECT @uv + 1;
SET SESSION group_concat_max_len = 8;
SELECT GROUP_CONCAT(k ORDER BY k) FROM kv;
SHOW WARNINGS;
SET SESSION group_concat_max_len = DEFAULT;
SET SESSION div_precision_increment = 10;
SELECT 1 / 3;
SET SESSION div_precision_increment = DEFAULT;
SET SESSION no_such_variable = 1;
SET SESSION sql_mode = 'NO_SUCH_MODE';
-- reconnect

-- ---------------------------------------------------------------- transactions
BEGIN;
INSERT INTO kv (k, v) VALUES ('tx1', 1);
SELECT * FROM kv WHERE k = 'tx1';
ROLLBACK;
SELECT * FROM kv WHERE k = 'tx1';
START TRANSACTION;
INSERT INTO kv (k, v) VALUES ('tx2', 2);
UPDATE kv SET v = v * 2 WHERE k = 'tx2';
SELECT k, v FROM kv WHERE k LIKE 'tx%' FOR UPDATE;
COMMIT;
SELECT k, v FROM kv WHERE k LIKE 'tx%';
SET autocommit = 0;
INSERT INTO kv (k, v) VALUES ('ac0', 1);
SELECT @@autocommit, k FROM kv WHERE k = 'ac0';
ROLLBACK;
SET autocommit = 1;
SELECT k FROM kv WHERE k = 'ac0';
-- A write inside START TRANSACTION READ ONLY is left out on purpose: the proxy may run a
-- read-only transaction on a replica (DESIGN.md), where it fails with 1290 (--read-only)
-- instead of the primary's 1792 (READ ONLY transaction). Both are errors; see clients.rs.
START TRANSACTION READ ONLY;
SELECT COUNT(*) FROM kv;
COMMIT;

-- ---------------------------------------------------------------- multi-statements / routines
-- text-only
SELECT 1 AS one; SELECT 'two' AS two, 2; SELECT * FROM empty_t;
-- text-only
INSERT INTO empty_t VALUES (1, 'a'); UPDATE empty_t SET b = 'b'; SELECT * FROM empty_t;
-- text-only
SELECT 1; SELEC 2; SELECT 3;
-- text-only
DELETE FROM empty_t; SELECT COUNT(*) FROM empty_t;
DROP PROCEDURE IF EXISTS p_sets;
CREATE PROCEDURE p_sets(IN n INT) BEGIN SELECT n AS n; SELECT k, v FROM kv ORDER BY k LIMIT 2; UPDATE kv SET v = v WHERE k = 'zz'; END;
CALL p_sets(7);
DROP FUNCTION IF EXISTS f_add;
CREATE FUNCTION f_add(a INT, b INT) RETURNS INT DETERMINISTIC RETURN a + b;
SELECT f_add(2, 3), f_add(NULL, 1);
DO 1 + 1;
-- text-only
HELP 'no_such_help_topic';

-- ---------------------------------------------------------------- statements of comments only
-- (what `mariadb -c` sends for a dump's `--` lines: the server answers OK)
/* nothing but a comment */;
/*!40101 */;
/*M!100100 */;
# a hash comment;
/* a */ /* b */ ;

-- ---------------------------------------------------------------- temporary tables, cleanup
CREATE TEMPORARY TABLE tmp1 (x INT);
INSERT INTO tmp1 VALUES (1), (2), (3);
SELECT SUM(x) FROM tmp1;
DROP TEMPORARY TABLE tmp1;
SELECT * FROM tmp1;
TRUNCATE TABLE empty_t;
SELECT COUNT(*) FROM empty_t;
DROP VIEW v_nums;
DROP TABLE kv;
SELECT * FROM kv;
