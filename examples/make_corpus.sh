#!/usr/bin/env bash
# Provenance script: rebuilds the demo corpus in examples/postgresql/ and the
# small test fixtures in tests/fixtures/docs/ from Debian's postgresql-doc-15
# package (PostgreSQL 15 manual, PostgreSQL Licence). It is not run in CI.
#
# Requirements (Debian 12 "bookworm"; the versions used are in brackets):
#   apt-get install -y pandoc poppler-utils libreoffice-writer-nogui
#   (pandoc 2.17.1.1, poppler-utils 22.12.0, LibreOffice 7.4.7), plus perl
#   and dpkg, which a Debian system already has.
#
# Usage: examples/make_corpus.sh [all|corpus|fixtures]     (default: all)
# Environment:
#   PGDOC_DEB      use this already downloaded postgresql-doc-15 .deb
#   PGDOC_VERSION  package version to download (default below; set it to ""
#                  to take whatever version the apt sources offer)
#
# What it does:
#   * 21 pages are copied unchanged as .html.
#   * The other pages lose the navigation header/footer (the
#     <div class="navheader"> and <div class="navfooter"> blocks) and are
#     converted: 6 to PDF (LibreOffice Writer, HTML import, writer_pdf_Export),
#     5 to DOCX (pandoc html -> docx), 5 to Markdown (pandoc html -> gfm) and
#     3 to plain text (pandoc html -> plain). Pandoc's HTML reader is
#     used with the native_divs extension off. Each page exists in one format only.
set -euo pipefail

WHAT=${1:-all}
case "$WHAT" in all|corpus|fixtures) ;; *) echo "usage: $0 [all|corpus|fixtures]" >&2; exit 2;; esac

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
DEST="$HERE/postgresql"
FIXTURES="$REPO/tests/fixtures/docs"
PGDOC_VERSION=${PGDOC_VERSION-15.18-0+deb12u1}
# Fixed timestamp so that pandoc's DOCX metadata is reproducible.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1735689600}

for tool in pandoc soffice pdftotext perl dpkg; do
    command -v "$tool" >/dev/null || { echo "missing tool: $tool" >&2; exit 1; }
done

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# --- fetch and unpack the Debian package -----------------------------------
if [ -n "${PGDOC_DEB:-}" ]; then
    cp "$PGDOC_DEB" "$WORK/"
else
    (cd "$WORK" && apt-get download "postgresql-doc-15${PGDOC_VERSION:+=$PGDOC_VERSION}")
fi
dpkg -x "$WORK"/postgresql-doc-15_*.deb "$WORK/pgdoc"
SRC="$WORK/pgdoc/usr/share/doc/postgresql-doc-15/html"
echo "using $(basename "$WORK"/postgresql-doc-15_*.deb)"

# --- page lists (topic: indexes, query planning and performance) ----------
# Kept as the original HTML files.
HTML_PAGES=(
    indexes-intro indexes-types indexes-ordering indexes-bitmap-scans
    indexes-expressional indexes-opclass
    using-explain planner-stats row-estimation-examples runtime-config-query
    when-can-parallel-query-be-used parallel-safety
    btree-behavior gist-implementation gin-intro gin-implementation
    brin-builtin-opclasses hash-implementation
    sql-createindex sql-explain sql-reindex
)
PDF_PAGES=(indexes-partial planner-optimizer parallel-plans btree-implementation brin-intro sql-analyze)
DOCX_PAGES=(indexes-multicolumn explicit-joins gin-tips hash-intro sql-createstatistics)
MD_PAGES=(indexes-index-only-scans populate how-parallel-query-works gist-builtin-opclasses textsearch-indexes)
TXT_PAGES=(indexes-examine multivariate-statistics-examples spgist-implementation)

# --- converters --------------------------------------------------------------
# strip_nav PAGE -> writes $WORK/stripped/PAGE.html without the navigation bars
strip_nav() {
    mkdir -p "$WORK/stripped"
    [ -f "$WORK/stripped/stylesheet.css" ] || cp "$SRC/stylesheet.css" "$WORK/stripped/"
    perl -0pe 's{<div class="navheader">.*?</div>}{}s; s{<div class="navfooter">.*?</div>}{}s' \
        "$SRC/$1.html" > "$WORK/stripped/$1.html"
}
to_html() { mkdir -p "$2"; cp "$SRC/$1.html" "$2/$1.html"; }
to_pdf() {
    strip_nav "$1"; mkdir -p "$2"
    # The explicit HTML (StarWriter) import filter matters: letting LibreOffice
    # open the XHTML page as a Writer/Web document made it spin forever.
    soffice --headless "-env:UserInstallation=file://$WORK/lo-profile" \
        --infilter="HTML (StarWriter)" --convert-to pdf:writer_pdf_Export \
        --outdir "$2" "$WORK/stripped/$1.html" >"$WORK/soffice.log" 2>&1 \
        || { cat "$WORK/soffice.log" >&2; exit 1; }
    [ "$(pdftotext "$2/$1.pdf" - | wc -w)" -gt 100 ] || { echo "no text layer in $1.pdf" >&2; exit 1; }
}
# "-native_divs" makes pandoc unwrap DocBook's <div>s instead of emitting them
# as raw HTML in the Markdown output.
PANDOC=(pandoc -f html-native_divs)
to_docx() { strip_nav "$1"; mkdir -p "$2"; "${PANDOC[@]}" -t docx -o "$2/$1.docx" "$WORK/stripped/$1.html"; }
# DocBook's class names ("programlisting", "screen") would end up as the info
# string of fenced code blocks; drop them.
to_md()   {
    strip_nav "$1"; mkdir -p "$2"
    "${PANDOC[@]}" -t gfm-raw_html "$WORK/stripped/$1.html" | sed -E 's/^``` +[a-z]+$/```/' > "$2/$1.md"
}
to_txt()  { strip_nav "$1"; mkdir -p "$2"; "${PANDOC[@]}" -t plain -o "$2/$1.txt" "$WORK/stripped/$1.html"; }

# --- demo corpus -------------------------------------------------------------
if [ "$WHAT" = all ] || [ "$WHAT" = corpus ]; then
    rm -rf "$DEST/html" "$DEST/pdf" "$DEST/docx" "$DEST/md" "$DEST/txt"
    for p in "${HTML_PAGES[@]}"; do to_html "$p" "$DEST/html"; done
    for p in "${PDF_PAGES[@]}";  do to_pdf  "$p" "$DEST/pdf";  done
    for p in "${DOCX_PAGES[@]}"; do to_docx "$p" "$DEST/docx"; done
    for p in "${MD_PAGES[@]}";   do to_md   "$p" "$DEST/md";   done
    for p in "${TXT_PAGES[@]}";  do to_txt  "$p" "$DEST/txt";  done
    echo "corpus written to examples/postgresql/ ($(find "$DEST" -type f ! -name NOTICE | wc -l) files)"
fi

# --- test fixtures: five short pages on unrelated topics --------------------
if [ "$WHAT" = all ] || [ "$WHAT" = fixtures ]; then
    mkdir -p "$FIXTURES"
    to_html wal-intro             "$FIXTURES"   # 30.3  Write-ahead logging (WAL)
    to_md   tutorial-inheritance  "$FIXTURES"   # 3.6   Tutorial: table inheritance
    to_txt  tutorial-agg          "$FIXTURES"   # 2.7   Tutorial: aggregate functions
    to_pdf  ddl-generated-columns "$FIXTURES"   # 5.3   Generated columns
    to_docx manage-ag-templatedbs "$FIXTURES"   # 23.3  Template databases
    echo "fixtures written to tests/fixtures/docs/"
fi
