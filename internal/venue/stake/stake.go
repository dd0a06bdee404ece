// Package stake is the Stake.com venue: a GraphQL API authenticated with
// the x-access-token header.
//
// Classification reads the GraphQL document itself: every top-level field
// of every operation in the document is looked up (the operation name a
// client declares is not trusted), and the request is classified as its
// most sensitive field, so a withdrawal cannot hide behind a balance query
// in the same document. Batches, fragment spreads at the top level,
// subscriptions and unknown fields are unmapped and so denied by default.
package stake

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/keystile/keystile/internal/venue"
)

// FieldToken is the credential field holding the API token.
const FieldToken = "api_token"

// Fields maps top-level GraphQL fields to operations, by operation type.
var Fields = map[string]map[string]string{
	"query": {
		"user":            venue.OpAccountRead, // balances, bets; refined below
		"info":            venue.OpMarketRead,
		"sportList":       venue.OpMarketRead,
		"slugSport":       venue.OpMarketRead,
		"sportFixture":    venue.OpMarketRead,
		"slugTournament":  venue.OpMarketRead,
		"sportMarket":     venue.OpMarketRead,
		"currencyConfig":  venue.OpMarketRead,
		"activeSportBets": venue.OpOrderRead,
		"bet":             venue.OpOrderRead,
		"__typename":      venue.OpMarketRead,
	},
	"mutation": {
		"sportBet":           venue.OpOrderPlace,
		"multipleSportBet":   venue.OpOrderPlace,
		"diceRoll":           venue.OpOrderPlace,
		"limboBet":           venue.OpOrderPlace,
		"cancelSportBet":     venue.OpOrderCancel,
		"cashoutSportBet":    venue.OpOrderCancel,
		"createWithdrawal":   venue.OpWalletWithdraw,
		"withdraw":           venue.OpWalletWithdraw,
		"sendTip":            venue.OpWalletTransfer,
		"createVaultDeposit": venue.OpWalletTransfer,
		"createApiKey":       venue.OpAPIKeyManage,
		"deleteApiKey":       venue.OpAPIKeyManage,
		"updateApiKey":       venue.OpAPIKeyManage,
	},
}

// Options configure New.
type Options struct {
	Credentials venue.Credentials // required
}

// Venue is a Stake venue.
type Venue struct{ creds venue.Credentials }

// New returns a Stake venue.
func New(o Options) (*Venue, error) {
	if o.Credentials == nil {
		return nil, errors.New("stake: no credentials")
	}
	return &Venue{creds: o.Credentials}, nil
}

type gqlRequest struct {
	Query         string          `json:"query"`
	OperationName string          `json:"operationName"`
	Variables     json.RawMessage `json:"variables"`
}

// Classify implements venue.Venue.
func (v *Venue) Classify(r *venue.Request) (string, bool) {
	if r.Method != http.MethodPost || strings.Trim(r.Path, "/") != "graphql" {
		return "", false
	}
	var req gqlRequest
	dec := json.NewDecoder(strings.NewReader(string(r.Body)))
	if err := dec.Decode(&req); err != nil || req.Query == "" {
		return "", false
	}
	ops, err := TopLevelFields(req.Query)
	if err != nil || len(ops) == 0 {
		return "", false
	}
	var names []string
	for _, f := range ops {
		op, ok := Fields[f.OpType][f.Name]
		if !ok {
			return "", false
		}
		if f.OpType == "query" && f.Name == "user" && f.Selects("activeSportBets", "sportBetList", "betList") {
			op = venue.OpOrderRead
		}
		names = append(names, op)
	}
	return venue.MostSensitive(names...), true
}

// CredentialHeaders implements venue.Venue.
func (v *Venue) CredentialHeaders() []string { return []string{"X-Access-Token"} }

// Authenticate implements venue.Venue.
func (v *Venue) Authenticate(ctx context.Context, out *http.Request, _ []byte) error {
	return v.creds(ctx, func(c venue.Credential) error {
		t, err := c.Field(FieldToken)
		if err != nil {
			return err
		}
		out.Header.Set("x-access-token", string(t.Reveal()))
		return nil
	})
}

// Field is a top-level field of an operation in a GraphQL document.
type Field struct {
	OpType string // query or mutation
	Name   string
	// Sub holds the names of the field's direct sub-fields.
	Sub []string
}

// Selects reports whether the field selects any of names directly.
func (f Field) Selects(names ...string) bool {
	for _, s := range f.Sub {
		for _, n := range names {
			if s == n {
				return true
			}
		}
	}
	return false
}

// ErrUnsupported is returned for documents keystile refuses to classify.
var ErrUnsupported = errors.New("stake: unsupported GraphQL document")

// TopLevelFields lists the top-level fields of every operation in a GraphQL
// document. Fragment definitions are skipped; a fragment spread or inline
// fragment at the top level, a subscription, or a malformed document is
// ErrUnsupported.
func TopLevelFields(doc string) ([]Field, error) {
	toks, err := lex(doc)
	if err != nil {
		return nil, err
	}
	var out []Field
	i := 0
	for i < len(toks) {
		t := toks[i]
		opType := ""
		switch {
		case t == "{":
			opType = "query" // shorthand query
		case t == "query" || t == "mutation":
			opType = t
			i++
			for i < len(toks) && toks[i] != "{" {
				if toks[i] == "(" {
					j, err := skip(toks, i, "(", ")")
					if err != nil {
						return nil, err
					}
					i = j
					continue
				}
				i++
			}
		case t == "fragment":
			for i < len(toks) && toks[i] != "{" {
				i++
			}
			j, err := skip(toks, i, "{", "}")
			if err != nil {
				return nil, err
			}
			i = j
			continue
		default:
			return nil, fmt.Errorf("%w: unexpected %q at top level", ErrUnsupported, t)
		}
		if i >= len(toks) || toks[i] != "{" {
			return nil, fmt.Errorf("%w: operation without selection set", ErrUnsupported)
		}
		end, err := skip(toks, i, "{", "}")
		if err != nil {
			return nil, err
		}
		fields, err := selection(toks[i+1:end-1], opType)
		if err != nil {
			return nil, err
		}
		out = append(out, fields...)
		i = end
	}
	return out, nil
}

// selection parses the inside of a top-level selection set.
func selection(toks []string, opType string) ([]Field, error) {
	var out []Field
	for i := 0; i < len(toks); {
		t := toks[i]
		if t == "..." {
			return nil, fmt.Errorf("%w: fragment at top level", ErrUnsupported)
		}
		if !isName(t) {
			return nil, fmt.Errorf("%w: unexpected %q", ErrUnsupported, t)
		}
		name := t
		i++
		if i < len(toks) && toks[i] == ":" { // alias
			i++
			if i >= len(toks) || !isName(toks[i]) {
				return nil, fmt.Errorf("%w: bad alias", ErrUnsupported)
			}
			name = toks[i]
			i++
		}
		f := Field{OpType: opType, Name: name}
		for i < len(toks) && (toks[i] == "(" || toks[i] == "@") {
			if toks[i] == "@" {
				i += 2
				continue
			}
			j, err := skip(toks, i, "(", ")")
			if err != nil {
				return nil, err
			}
			i = j
		}
		if i < len(toks) && toks[i] == "{" {
			j, err := skip(toks, i, "{", "}")
			if err != nil {
				return nil, err
			}
			depth := 0
			for _, s := range toks[i+1 : j-1] {
				switch s {
				case "{", "(":
					depth++
				case "}", ")":
					depth--
				default:
					if depth == 0 && isName(s) {
						f.Sub = append(f.Sub, s)
					}
				}
			}
			i = j
		}
		out = append(out, f)
	}
	return out, nil
}

// skip returns the index after the bracket matching toks[i] (== open).
func skip(toks []string, i int, open, close string) (int, error) {
	if i >= len(toks) || toks[i] != open {
		return 0, fmt.Errorf("%w: expected %q", ErrUnsupported, open)
	}
	depth := 0
	for ; i < len(toks); i++ {
		switch toks[i] {
		case open:
			depth++
		case close:
			depth--
			if depth == 0 {
				return i + 1, nil
			}
		}
	}
	return 0, fmt.Errorf("%w: unbalanced %q", ErrUnsupported, open)
}

func isName(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// lex splits a GraphQL document into names, punctuators and opaque value
// tokens; strings and comments are dropped (their content never matters
// for classification).
func lex(doc string) ([]string, error) {
	if len(doc) > 1<<20 {
		return nil, fmt.Errorf("%w: document too large", ErrUnsupported)
	}
	var toks []string
	for i := 0; i < len(doc); {
		c := doc[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == ',' || c == 0xEF || c == 0xBB || c == 0xBF:
			i++
		case c == '#':
			for i < len(doc) && doc[i] != '\n' && doc[i] != '\r' {
				i++
			}
		case strings.HasPrefix(doc[i:], `"""`):
			end := strings.Index(doc[i+3:], `"""`)
			for end >= 0 && end > 0 && doc[i+3+end-1] == '\\' {
				next := strings.Index(doc[i+3+end+3:], `"""`)
				if next < 0 {
					end = -1
					break
				}
				end += 3 + next
			}
			if end < 0 {
				return nil, fmt.Errorf("%w: unterminated block string", ErrUnsupported)
			}
			toks = append(toks, `""`)
			i += 3 + end + 3
		case c == '"':
			j := i + 1
			for j < len(doc) && doc[j] != '"' {
				if doc[j] == '\\' {
					j++
				}
				if j < len(doc) && (doc[j] == '\n' || doc[j] == '\r') {
					return nil, fmt.Errorf("%w: newline in string", ErrUnsupported)
				}
				j++
			}
			if j >= len(doc) {
				return nil, fmt.Errorf("%w: unterminated string", ErrUnsupported)
			}
			toks = append(toks, `""`)
			i = j + 1
		case strings.HasPrefix(doc[i:], "..."):
			toks = append(toks, "...")
			i += 3
		case strings.ContainsRune("{}()[]:=@!$|&", rune(c)):
			toks = append(toks, string(c))
			i++
		case c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c >= '0' && c <= '9':
			j := i + 1
			for j < len(doc) && (doc[j] == '_' || doc[j] == '.' || doc[j] == '+' || doc[j] == '-' || doc[j] >= 'a' && doc[j] <= 'z' || doc[j] >= 'A' && doc[j] <= 'Z' || doc[j] >= '0' && doc[j] <= '9') {
				j++
			}
			tok := doc[i:j]
			if i > 0 && doc[i-1] == '$' {
				tok = "$" + tok // variable: never a field name
			}
			toks = append(toks, tok)
			i = j
		default:
			return nil, fmt.Errorf("%w: unexpected character", ErrUnsupported)
		}
	}
	return toks, nil
}

var _ venue.Venue = (*Venue)(nil)
