// Command doccoverage counts the exported names of Go packages and those without a doc comment: functions,
// types, constants and variables, methods of exported types, and the exported fields and interface methods
// of exported types. A name in a parenthesized const or var group counts as documented by the group's
// comment, and a struct field by the comment of the field just above it when no blank line parts them
// ("// A, B and C are ..."), as go doc shows them. Test files and main packages are skipped.
//
//	go run ./hack/doccoverage ./pkg/lifelock ./pkg/manageropts
//
// It prints one line per package, then every name lacking a doc comment, and exits 1 if there is one.
package main

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// counts are one package's figures.
type counts struct {
	names, namesMissing   int // top-level names and methods
	fields, fieldsMissing int // fields and interface methods
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: doccoverage DIR...")
		os.Exit(2)
	}
	var lacking []string
	var total counts
	for _, dir := range os.Args[1:] {
		c, pkg, lacks, err := scan(dir)
		if err != nil {
			fmt.Fprintln(os.Stderr, "doccoverage:", err)
			os.Exit(2)
		}
		if pkg == "" {
			continue
		}
		fmt.Printf("%-12s exported names and methods %3d, undocumented %d; exported fields and interface methods %3d, undocumented %d\n",
			pkg, c.names, c.namesMissing, c.fields, c.fieldsMissing)
		total.names += c.names
		total.namesMissing += c.namesMissing
		total.fields += c.fields
		total.fieldsMissing += c.fieldsMissing
		lacking = append(lacking, lacks...)
	}
	fmt.Printf("%-12s exported names and methods %3d, undocumented %d; exported fields and interface methods %3d, undocumented %d\n",
		"total", total.names, total.namesMissing, total.fields, total.fieldsMissing)
	sort.Strings(lacking)
	for _, l := range lacking {
		fmt.Println("no doc comment:", l)
	}
	if len(lacking) > 0 {
		os.Exit(1)
	}
}

// scan parses the non-test Go files of dir and counts its exported names. It returns the package's name
// ("" for a main package or none) and where each undocumented name is.
func scan(dir string) (counts, string, []string, error) {
	var c counts
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return c, "", nil, err
	}
	fset := token.NewFileSet()
	pkg := ""
	var lacks []string
	note := func(pos token.Pos, name string, doc *ast.CommentGroup, field bool) {
		documented := doc != nil && strings.TrimSpace(doc.Text()) != ""
		if field {
			c.fields++
		} else {
			c.names++
		}
		if documented {
			return
		}
		if field {
			c.fieldsMissing++
		} else {
			c.namesMissing++
		}
		lacks = append(lacks, fmt.Sprintf("%s: %s", fset.Position(pos), name))
	}
	for _, file := range files {
		if strings.HasSuffix(file, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, file, nil, parser.ParseComments)
		if err != nil {
			return c, "", nil, err
		}
		if f.Name.Name == "main" {
			continue
		}
		pkg = f.Name.Name
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				if name, ok := exportedFunc(d); ok {
					note(d.Pos(), name, d.Doc, false)
				}
			case *ast.GenDecl:
				for _, s := range d.Specs {
					switch s := s.(type) {
					case *ast.TypeSpec:
						if !s.Name.IsExported() {
							continue
						}
						doc := s.Doc
						if doc == nil && !d.Lparen.IsValid() {
							doc = d.Doc
						}
						note(s.Pos(), s.Name.Name, doc, false)
						for _, fl := range fieldsOf(fset, s) {
							for _, n := range fl.names {
								note(n.Pos(), s.Name.Name+"."+n.Name, fl.doc, true)
							}
						}
					case *ast.ValueSpec:
						for _, n := range s.Names {
							if !n.IsExported() {
								continue
							}
							doc := firstDoc(s.Doc, s.Comment, d.Doc)
							note(n.Pos(), n.Name, doc, false)
						}
					}
				}
			}
		}
	}
	return c, pkg, lacks, nil
}

// exportedFunc returns the name of an exported function, or of an exported method of an exported type
// ("Type.Method").
func exportedFunc(d *ast.FuncDecl) (string, bool) {
	if !d.Name.IsExported() {
		return "", false
	}
	if d.Recv == nil || len(d.Recv.List) == 0 {
		return d.Name.Name, true
	}
	t := d.Recv.List[0].Type
	if s, ok := t.(*ast.StarExpr); ok {
		t = s.X
	}
	switch x := t.(type) {
	case *ast.IndexExpr:
		t = x.X
	case *ast.IndexListExpr:
		t = x.X
	}
	id, ok := t.(*ast.Ident)
	if !ok || !id.IsExported() {
		return "", false
	}
	return id.Name + "." + d.Name.Name, true
}

// field is one line of exported fields (or an interface method) and the comment that documents it.
type field struct {
	names []*ast.Ident
	doc   *ast.CommentGroup
}

// fieldsOf returns the exported fields of a struct type, or the methods of an interface type, each with
// its own comment, else the comment of the line just above it when nothing parts them.
func fieldsOf(fset *token.FileSet, s *ast.TypeSpec) []field {
	var list *ast.FieldList
	switch t := s.Type.(type) {
	case *ast.StructType:
		list = t.Fields
	case *ast.InterfaceType:
		list = t.Methods
	}
	if list == nil {
		return nil
	}
	var out []field
	var prev *ast.Field
	var prevDoc *ast.CommentGroup
	for _, fl := range list.List {
		doc := firstDoc(fl.Doc, fl.Comment)
		if doc == nil && prev != nil && fl.Doc == nil && prevDoc != nil && fset.Position(fl.Pos()).Line == fset.Position(prev.End()).Line+1 {
			doc = prevDoc
		}
		var names []*ast.Ident
		for _, n := range fl.Names {
			if n.IsExported() {
				names = append(names, n)
			}
		}
		if len(names) > 0 {
			out = append(out, field{names: names, doc: doc})
		}
		prev, prevDoc = fl, doc
	}
	return out
}

// firstDoc returns the first comment group that has text.
func firstDoc(groups ...*ast.CommentGroup) *ast.CommentGroup {
	for _, g := range groups {
		if g != nil && strings.TrimSpace(g.Text()) != "" {
			return g
		}
	}
	return nil
}
