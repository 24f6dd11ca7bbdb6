"""Splitting SQL scripts into statements, SQL*Plus style (mflow.tasks.sqlscript)."""

from __future__ import annotations

import pytest

from mflow.tasks.sqlscript import Statement, split_statements


def texts(script: str) -> list[str]:
    return [s.text for s in split_statements(script)]


# --------------------------------------------------------------------------- plain SQL


def test_semicolons_end_statements_and_are_stripped() -> None:
    assert texts("CREATE TABLE t (a int); INSERT INTO t VALUES (1);\nSELECT * FROM t;") == [
        "CREATE TABLE t (a int)",
        "INSERT INTO t VALUES (1)",
        "SELECT * FROM t",
    ]


def test_last_statement_needs_no_semicolon() -> None:
    assert texts("SELECT 1; SELECT 2") == ["SELECT 1", "SELECT 2"]


def test_empty_statements_and_comment_only_statements_are_dropped() -> None:
    assert texts(";;\n  ;\n-- nothing here;\n/* nor; here */\nSELECT 1;\n;\n-- trailing") == [
        "SELECT 1"
    ]
    assert texts("") == []
    assert texts("   \n\t\n") == []


def test_semicolons_inside_single_quotes_do_not_split() -> None:
    assert texts("INSERT INTO t VALUES ('a;b', 'it''s; fine'); SELECT ';'") == [
        "INSERT INTO t VALUES ('a;b', 'it''s; fine')",
        "SELECT ';'",
    ]


def test_semicolons_inside_double_quoted_identifiers_do_not_split() -> None:
    assert texts('SELECT "odd;name", "with ""quote;""" FROM t; SELECT 2') == [
        'SELECT "odd;name", "with ""quote;""" FROM t',
        "SELECT 2",
    ]


def test_semicolons_inside_comments_do_not_split() -> None:
    script = "SELECT 1 -- one; two\n, 2 /* three;\n four; */ FROM dual; SELECT 3"
    assert texts(script) == [
        "SELECT 1 -- one; two\n, 2 /* three;\n four; */ FROM dual",
        "SELECT 3",
    ]


def test_quote_characters_inside_comments_are_ignored() -> None:
    assert texts("SELECT 1; -- don't\nSELECT 2; /* it's */ SELECT 3") == [
        "SELECT 1",
        "SELECT 2",
        "SELECT 3",
    ]


def test_multiline_string_with_semicolon_and_slash_line_is_one_literal() -> None:
    script = "INSERT INTO t VALUES ('line one;\n/\nline three');\nSELECT 1"
    assert texts(script) == ["INSERT INTO t VALUES ('line one;\n/\nline three')", "SELECT 1"]


def test_oracle_q_quotes() -> None:
    script = "SELECT q'[it's; here]', Q'{a;}', nq'!x;y!' FROM dual; SELECT 2 FROM dual"
    assert texts(script) == [
        "SELECT q'[it's; here]', Q'{a;}', nq'!x;y!' FROM dual",
        "SELECT 2 FROM dual",
    ]


def test_postgres_escape_strings() -> None:
    assert texts(r"SELECT E'a\';b'; SELECT 'c\'; SELECT 3") == [
        r"SELECT E'a\';b'",
        r"SELECT 'c\'",
        "SELECT 3",
    ]


def test_leading_comments_are_removed_from_a_statement() -> None:
    statements = split_statements("-- header\n/* block */\n  SELECT 1;\n\n-- next\nSELECT 2;")
    assert statements == [Statement("SELECT 1", 3), Statement("SELECT 2", 6)]


def test_statements_know_their_line() -> None:
    statements = split_statements("SELECT 1;\n\nSELECT\n  2;\nSELECT 3; SELECT 4;")
    assert [s.line for s in statements] == [1, 3, 5, 5]


def test_crlf_line_endings() -> None:
    assert texts("SELECT 1;\r\nSELECT 2\r\n/\r\nSELECT 3;\r\n") == [
        "SELECT 1",
        "SELECT 2",
        "SELECT 3",
    ]


def test_identifiers_with_dollar_and_hash_are_not_dollar_quotes() -> None:
    assert texts("SELECT * FROM v$session; SELECT a$b$c, x#1 FROM t; SELECT 3") == [
        "SELECT * FROM v$session",
        "SELECT a$b$c, x#1 FROM t",
        "SELECT 3",
    ]


def test_non_ascii_text() -> None:
    assert texts("INSERT INTO t VALUES ('é;ñ'); SELECT über FROM t;") == [
        "INSERT INTO t VALUES ('é;ñ')",
        "SELECT über FROM t",
    ]


# --------------------------------------------------------------------------- slash lines


def test_slash_line_ends_a_statement_without_semicolon() -> None:
    assert texts("SELECT 1 FROM dual\n/\nSELECT 2 FROM dual\n  /  \n") == [
        "SELECT 1 FROM dual",
        "SELECT 2 FROM dual",
    ]


def test_slash_after_a_block_ending_with_end_semicolon_adds_no_statement() -> None:
    script = "BEGIN\n  NULL;\nEND;\n/\nSELECT 1 FROM dual;\n"
    assert texts(script) == ["BEGIN\n  NULL;\nEND;", "SELECT 1 FROM dual"]


def test_slash_line_ends_a_block_the_splitter_cannot_follow() -> None:
    script = "CREATE PROCEDURE p AS LANGUAGE JAVA NAME 'P.run()'\n/\nSELECT 1 FROM dual;"
    assert texts(script) == [
        "CREATE PROCEDURE p AS LANGUAGE JAVA NAME 'P.run()'",
        "SELECT 1 FROM dual",
    ]


def test_slash_inside_a_line_is_division() -> None:
    assert texts("SELECT 4 / 2 FROM dual;\nSELECT 1\n/ 2 FROM dual;") == [
        "SELECT 4 / 2 FROM dual",
        "SELECT 1\n/ 2 FROM dual",
    ]


# --------------------------------------------------------------------------- PL/SQL blocks


def test_seed_block_is_one_statement_keeping_its_semicolon() -> None:
    statements = split_statements("begin \n siper.test_data_gen.DESVIO_14_1; \n end;")
    assert statements == [
        Statement("begin \n siper.test_data_gen.DESVIO_14_1; \n end;", 1, plsql=True)
    ]


def test_anonymous_block_then_sql() -> None:
    script = (
        "BEGIN\n"
        "  INSERT INTO t VALUES (1);\n"
        "  IF SQL%ROWCOUNT > 0 THEN\n"
        "    dbms_output.put_line('ok; done');\n"
        "  END IF;\n"
        "END;\n"
        "SELECT * FROM t;"
    )
    assert texts(script) == [script.rsplit("\n", 1)[0], "SELECT * FROM t"]


def test_declare_block_with_nested_procedure_loops_and_case() -> None:
    script = (
        "DECLARE\n"
        "  n NUMBER := CASE WHEN 1 = 1 THEN 1 ELSE 0 END;\n"
        "  PROCEDURE say(s VARCHAR2) IS BEGIN dbms_output.put_line(s); END say;\n"
        "BEGIN\n"
        "  FOR r IN (SELECT level l FROM dual CONNECT BY level <= 3) LOOP\n"
        "    CASE r.l WHEN 1 THEN say('one'); ELSE say('more'); END CASE;\n"
        "  END LOOP;\n"
        "  WHILE n < 3 LOOP n := n + 1; END LOOP;\n"
        "  <<inner>> BEGIN NULL; END inner;\n"
        "END;"
    )
    assert texts(script + "\nSELECT 1 FROM dual;") == [script, "SELECT 1 FROM dual"]


def test_nested_begin_end_blocks_and_exception_section() -> None:
    script = (
        "BEGIN\n"
        "  BEGIN\n"
        "    DELETE FROM t;\n"
        "  EXCEPTION WHEN OTHERS THEN NULL;\n"
        "  END;\n"
        "  DECLARE x NUMBER; BEGIN x := 1; END;\n"
        "END;"
    )
    assert texts(f"{script}\nCOMMIT;") == [script, "COMMIT"]


@pytest.mark.parametrize(
    "head",
    [
        "CREATE PROCEDURE p",
        "CREATE OR REPLACE PROCEDURE p (a IN NUMBER DEFAULT 1)",
        "create or replace editionable procedure p",
        "CREATE OR REPLACE FUNCTION f RETURN NUMBER",
        "CREATE OR REPLACE NONEDITIONABLE FUNCTION f (x IN t.c%TYPE) RETURN t.c%TYPE",
    ],
)
def test_create_procedure_or_function_is_one_statement(head: str) -> None:
    body = (
        f"{head} IS\n"
        "  v NUMBER;\n"
        "  PROCEDURE helper IS BEGIN NULL; END;\n"
        "BEGIN\n"
        "  helper;\n"
        "  IF v IS NULL THEN v := 0; END IF;\n"
        "END;"
    )
    statements = split_statements(f"{body}\nSELECT 1 FROM dual;")
    assert [s.text for s in statements] == [body, "SELECT 1 FROM dual"]
    assert [s.plsql for s in statements] == [True, False]


def test_package_spec_with_declarations_only() -> None:
    spec = (
        "CREATE OR REPLACE PACKAGE pkg AS\n"
        "  TYPE ids IS TABLE OF NUMBER;\n"
        "  CURSOR c IS SELECT 1 FROM dual;\n"
        "  PROCEDURE run(n NUMBER);\n"
        "  FUNCTION total RETURN NUMBER;\n"
        "END pkg;"
    )
    assert texts(f"{spec}\nSELECT 1 FROM dual;") == [spec, "SELECT 1 FROM dual"]


def test_package_body_with_subprograms_and_initialisation_section() -> None:
    body = (
        "CREATE OR REPLACE PACKAGE BODY pkg AS\n"
        "  counter NUMBER;\n"
        "  PROCEDURE run(n NUMBER) IS BEGIN counter := n; END run;\n"
        "  FUNCTION total RETURN NUMBER IS\n"
        "    x NUMBER;\n"
        "  BEGIN\n"
        "    SELECT count(*) INTO x FROM t;\n"
        "    RETURN x;\n"
        "  END total;\n"
        "BEGIN\n"
        "  counter := 0;\n"
        "END pkg;"
    )
    assert texts(f"{body}\nSELECT pkg.total FROM dual;") == [body, "SELECT pkg.total FROM dual"]


def test_type_body_with_constructor_returning_self_as_result() -> None:
    body = (
        "CREATE OR REPLACE TYPE BODY point AS\n"
        "  CONSTRUCTOR FUNCTION point RETURN SELF AS RESULT IS BEGIN RETURN; END;\n"
        "  MEMBER FUNCTION norm RETURN NUMBER IS BEGIN RETURN sqrt(x * x + y * y); END;\n"
        "END;"
    )
    assert texts(f"{body}\nSELECT 1 FROM dual;") == [body, "SELECT 1 FROM dual"]


def test_object_type_spec_is_plain_sql() -> None:
    assert texts("CREATE TYPE point AS OBJECT (x NUMBER, y NUMBER);\nSELECT 1 FROM dual;") == [
        "CREATE TYPE point AS OBJECT (x NUMBER, y NUMBER)",
        "SELECT 1 FROM dual",
    ]


def test_oracle_trigger_with_when_clause_and_declare() -> None:
    trigger = (
        "CREATE OR REPLACE TRIGGER t_bi BEFORE INSERT ON t FOR EACH ROW\n"
        "WHEN (new.id IS NULL)\n"
        "DECLARE n NUMBER;\n"
        "BEGIN\n"
        "  SELECT s.nextval INTO n FROM dual;\n"
        "  :new.id := n;\n"
        "END;"
    )
    assert texts(f"{trigger}\nINSERT INTO t (a) VALUES (1);") == [
        trigger,
        "INSERT INTO t (a) VALUES (1)",
    ]


def test_compound_trigger() -> None:
    trigger = (
        "CREATE OR REPLACE TRIGGER t_c FOR UPDATE ON t COMPOUND TRIGGER\n"
        "  n NUMBER := 0;\n"
        "  BEFORE STATEMENT IS BEGIN n := 0; END BEFORE STATEMENT;\n"
        "  AFTER EACH ROW IS BEGIN n := n + 1; END AFTER EACH ROW;\n"
        "END t_c;"
    )
    assert texts(f"{trigger}\nSELECT 1 FROM dual;") == [trigger, "SELECT 1 FROM dual"]


def test_call_spec_ends_at_its_semicolon() -> None:
    spec = (
        "CREATE OR REPLACE FUNCTION f RETURN VARCHAR2 AS LANGUAGE JAVA\n"
        "NAME 'F.get() return java.lang.String';"
    )
    assert texts(f"{spec}\nSELECT f FROM dual;") == [spec, "SELECT f FROM dual"]


def test_inquiry_directives_inside_plsql_are_not_dollar_quotes() -> None:
    block = (
        "BEGIN\n  dbms_output.put_line($$PLSQL_UNIT);\n  dbms_output.put_line($$PLSQL_LINE);\nEND;"
    )
    assert texts(f"{block}\nSELECT 1 FROM dual;") == [block, "SELECT 1 FROM dual"]


def test_end_keywords_inside_strings_and_comments_do_not_count() -> None:
    block = "BEGIN\n  x := 'END;'; -- END;\n  /* END; */ y := \"END\";\nEND;"
    assert texts(f"{block}\nSELECT 1;") == [block, "SELECT 1"]


def test_java_source_runs_to_the_slash_line() -> None:
    java = (
        'CREATE OR REPLACE AND COMPILE JAVA SOURCE NAMED "Hello" AS\n'
        "public class Hello { // it's\n"
        '  public static String hi() { return "hi;"; }\n'
        "}"
    )
    assert texts(f"{java}\n/\nSELECT 1 FROM dual;") == [java, "SELECT 1 FROM dual"]


# --------------------------------------------------------------------------- PostgreSQL, SQLite


def test_postgres_do_block_with_dollar_quotes_is_plain_sql() -> None:
    script = "DO $$\nBEGIN\n  RAISE NOTICE 'x;';\nEND\n$$;\nSELECT 1;"
    statements = split_statements(script)
    assert [s.text for s in statements] == [
        "DO $$\nBEGIN\n  RAISE NOTICE 'x;';\nEND\n$$",
        "SELECT 1",
    ]
    assert not statements[0].plsql


def test_postgres_tagged_dollar_quotes_nest() -> None:
    script = "SELECT $outer$ a $$ b; $$ c; $outer$; SELECT $x$;$x$"
    assert texts(script) == ["SELECT $outer$ a $$ b; $$ c; $outer$", "SELECT $x$;$x$"]


def test_postgres_positional_parameters_are_not_dollar_quotes() -> None:
    assert texts("PREPARE q AS SELECT $1, $2; EXECUTE q(1, 2)") == [
        "PREPARE q AS SELECT $1, $2",
        "EXECUTE q(1, 2)",
    ]


def test_unterminated_dollar_sign_is_not_a_quote() -> None:
    assert texts("SELECT '$$' || $$x$$; SELECT 2") == ["SELECT '$$' || $$x$$", "SELECT 2"]


@pytest.mark.parametrize(
    "function",
    [
        "CREATE FUNCTION f() RETURNS int AS $$ BEGIN RETURN 1; END; $$ LANGUAGE plpgsql",
        "CREATE OR REPLACE FUNCTION f(a int DEFAULT CAST(1 AS int)) RETURNS int\n"
        "LANGUAGE plpgsql AS $body$\nBEGIN\n  RETURN a;\nEND;\n$body$",
        "CREATE FUNCTION f() RETURNS int AS 'SELECT 1;' LANGUAGE sql",
        "CREATE PROCEDURE p() LANGUAGE sql AS $$ INSERT INTO t VALUES (1); $$",
    ],
)
def test_postgres_functions_with_string_bodies_are_plain_sql(function: str) -> None:
    statements = split_statements(f"{function};\nSELECT f();")
    assert [s.text for s in statements] == [function, "SELECT f()"]
    assert not statements[0].plsql


def test_postgres_sql_standard_function_body_is_a_block() -> None:
    function = "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END;"
    assert texts(f"{function}\nSELECT f();") == [function, "SELECT f()"]


def test_postgres_trigger_calling_a_function_ends_at_its_semicolon() -> None:
    assert texts(
        "CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION f();\nSELECT 1;"
    ) == ["CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION f();", "SELECT 1"]


def test_postgres_cursor_declaration_is_not_a_block() -> None:
    assert texts("DECLARE c CURSOR FOR SELECT 1; FETCH c; CLOSE c;") == [
        "DECLARE c CURSOR FOR SELECT 1",
        "FETCH c",
        "CLOSE c",
    ]


@pytest.mark.parametrize(
    "begin",
    [
        "BEGIN",
        "begin transaction",
        "BEGIN WORK",
        "BEGIN ISOLATION LEVEL SERIALIZABLE",
        "BEGIN IMMEDIATE",
    ],
)
def test_transaction_begin_is_not_a_block(begin: str) -> None:
    assert texts(f"{begin};\nINSERT INTO t VALUES (1);\nCOMMIT;") == [
        begin,
        "INSERT INTO t VALUES (1)",
        "COMMIT",
    ]


def test_sqlite_trigger_body_is_one_statement() -> None:
    trigger = (
        "CREATE TRIGGER IF NOT EXISTS count_t AFTER INSERT ON t\n"
        "BEGIN\n"
        "  UPDATE c SET n = n + 1;\n"
        "  INSERT INTO log VALUES (new.a, CASE WHEN new.a > 0 THEN 'pos' ELSE 'neg' END);\n"
        "END;"
    )
    statements = split_statements(f"{trigger}\nINSERT INTO t VALUES (1);")
    assert [s.text for s in statements] == [trigger, "INSERT INTO t VALUES (1)"]


def test_case_expression_in_plain_sql_does_not_open_a_block() -> None:
    assert texts("SELECT CASE WHEN a THEN 1 END FROM t; DROP TABLE IF EXISTS t; SELECT 3") == [
        "SELECT CASE WHEN a THEN 1 END FROM t",
        "DROP TABLE IF EXISTS t",
        "SELECT 3",
    ]


def test_unterminated_block_runs_to_the_end_of_the_script() -> None:
    assert texts("BEGIN\n  NULL;\n") == ["BEGIN\n  NULL;"]
