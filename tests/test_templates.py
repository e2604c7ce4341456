"""The template language: variables with an optional default, nothing else."""

from __future__ import annotations

import pytest

from sendmail.contract.templates import (
    MAX_DEFAULT_CHARS,
    RenderError,
    Template,
    TemplateError,
    Variable,
    compile_template,
)


def test_variables_and_defaults_are_substituted() -> None:
    template = compile_template('안녕하세요 {{ name }}님, {{city|default("서울")}}에서 {{ name }}')
    assert template.parts == (
        "안녕하세요 ",
        Variable("name"),
        "님, ",
        Variable("city", "서울"),
        "에서 ",
        Variable("name"),
    )
    assert template.required == frozenset({"name"})
    assert template.names == frozenset({"name", "city"})
    assert template.render({"name": "김민수"}) == "안녕하세요 김민수님, 서울에서 김민수"
    assert template.render({"name": "김민수", "city": "부산"}).endswith("부산에서 김민수")


def test_text_without_braces_is_literal() -> None:
    template = compile_template("no variables: { } {x} }")
    assert template.is_literal
    assert template.render({}) == "no variables: { } {x} }"
    assert compile_template("").parts == ()


@pytest.mark.parametrize(
    "text",
    [
        "{{ 'a' * 10**7 }}",  # Jinja folds it into 10 MB at compile time
        "{% for i in range(10**6) %}x{% endfor %}",
        "{{ range(10) }}",
        "{{ name.__class__ }}",
        "{{ name['x'] }}",
        "{{ name | upper }}",
        "{{ name | default(other) }}",
        '{{ name | default("a") | default("b") }}',
        "{{ name() }}",
        "{{ 1 + 1 }}",
        "{{ }}",
        "{{ 9name }}",
        "{# a comment #}",
        "{{ name",
        "name }}",
        "{{ a }} b }}",
        '{{ name | default("unterminated) }}',
        "{{ lipsum.__globals__ }}",
        "{{ cycler.__init__.__globals__.os }}",
    ],
)
def test_anything_but_a_variable_or_a_default_is_refused(text: str) -> None:
    with pytest.raises(TemplateError) as refused:
        compile_template(text, field="body")
    assert str(refused.value).startswith("body: ")


def test_a_refusal_says_where_and_what_is_allowed() -> None:
    with pytest.raises(TemplateError, match=r"character 7: only \{\{ name \}\}"):
        compile_template("Hello {{ name.upper() }}", field="subject")


def test_defaults_take_either_quote_and_escapes() -> None:
    template = compile_template("""{{ a | default('it\\'s') }} {{ b|default("say \\"hi\\"") }}""")
    assert template.render({}) == """it's say "hi\""""


def test_a_default_has_a_length_limit() -> None:
    compile_template('{{ a | default("' + "x" * MAX_DEFAULT_CHARS + '") }}')
    with pytest.raises(TemplateError, match="longer than"):
        compile_template('{{ a | default("' + "x" * (MAX_DEFAULT_CHARS + 1) + '") }}')


def test_values_are_html_escaped_in_html_and_never_elsewhere() -> None:
    template = compile_template("<p>{{ name }}</p>")
    value = {"name": "<script>alert(\"x\")</script> & 'co'"}
    assert template.render(value, escape_html=True) == (
        "<p>&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#x27;co&#x27;</p>"
    )
    assert template.render(value) == "<p>" + value["name"] + "</p>"
    assert template.rendered_length(value, escape_html=True) == len(
        template.render(value, escape_html=True)
    )


def test_a_value_is_never_read_as_a_template() -> None:
    template = compile_template("{{ a }}")
    assert template.render({"a": "{{ b }} {% x %}"}) == "{{ b }} {% x %}"


def test_missing_variables_are_named_in_order_and_once() -> None:
    template = compile_template("{{ b }} {{ a }} {{ b }} {{ c | default('x') }}")
    assert template.missing({}) == ["b", "a"]
    assert template.missing({"a": "1"}) == ["b"]
    assert template.missing({"a": "1", "b": "2"}) == []
    with pytest.raises(RenderError, match="no value for b"):
        template.render({"a": "1"})


def test_the_output_has_a_size_limit_known_before_rendering() -> None:
    template = compile_template("Hi {{ name }}")
    values = {"name": "x" * 100}
    assert template.rendered_length(values) == 103
    assert template.render(values, max_chars=103) == "Hi " + "x" * 100
    with pytest.raises(RenderError, match="longer than 102"):
        template.render(values, max_chars=102)


def test_a_literal_template_renders_its_text() -> None:
    assert Template(("a", "b")).render({}) == "ab"
