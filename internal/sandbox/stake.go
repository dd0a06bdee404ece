package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/keystile/keystile/internal/secret"
)

// ErrStakeToken is returned by VerifyStake for a missing or wrong token.
var ErrStakeToken = errors.New("sandbox: stake: invalid access token")

// VerifyStake checks Stake's header authentication: x-access-token must be
// the account's API token (64 hex characters), compared in constant time.
func VerifyStake(headers http.Header, token secret.Value) error {
	got := headers.Get("X-Access-Token")
	if !isHex(got, 64) || !token.EqualBytes([]byte(got)) {
		return ErrStakeToken
	}
	return nil
}

// GraphQLRequest is the body of a GraphQL POST.
type GraphQLRequest struct {
	Query         string          `json:"query"`
	OperationName string          `json:"operationName,omitempty"`
	Variables     json.RawMessage `json:"variables,omitempty"`
}

// GraphQLOperation returns the name the sandbox counts a GraphQL request
// under: operationName if given, else the name of the query's operation,
// else its first top-level field. It also returns the first top-level field
// and whether the document is a mutation. It never fails: an unparsable
// document gives empty strings.
func GraphQLOperation(req GraphQLRequest) (op, field string, mutation bool) {
	lx := gqlLexer{s: req.Query}
	tok := lx.next()
	name := ""
	if tok == "query" || tok == "mutation" || tok == "subscription" {
		mutation = tok == "mutation"
		tok = lx.next()
		if isGQLName(tok) {
			name = tok
			tok = lx.next()
		}
		if tok == "(" { // variable definitions
			for depth := 1; depth > 0; {
				switch lx.next() {
				case "(":
					depth++
				case ")":
					depth--
				case "":
					return pickOperation(req.OperationName, name, ""), "", mutation
				}
			}
			tok = lx.next()
		}
		for tok == "@" { // directives without arguments are enough here
			lx.next()
			tok = lx.next()
		}
	}
	if tok == "{" {
		f := lx.next()
		if isGQLName(f) {
			if lx.peek() == ":" { // alias
				lx.next()
				f = lx.next()
			}
			if isGQLName(f) {
				field = f
			}
		}
	}
	return pickOperation(req.OperationName, name, field), field, mutation
}

func pickOperation(opName, docName, field string) string {
	switch {
	case isGQLName(opName):
		return opName
	case docName != "":
		return docName
	}
	return field
}

func isGQLName(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		if c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (i > 0 && c >= '0' && c <= '9') {
			continue
		}
		return false
	}
	return true
}

// gqlLexer yields GraphQL names and punctuators, skipping whitespace,
// commas, comments and string literals.
type gqlLexer struct {
	s   string
	pos int
}

func (l *gqlLexer) peek() string {
	save := l.pos
	t := l.next()
	l.pos = save
	return t
}

func (l *gqlLexer) next() string {
	for l.pos < len(l.s) {
		c := l.s[l.pos]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == ',':
			l.pos++
		case c == '#':
			for l.pos < len(l.s) && l.s[l.pos] != '\n' {
				l.pos++
			}
		case c == '"':
			l.pos++
			for l.pos < len(l.s) && l.s[l.pos] != '"' {
				if l.s[l.pos] == '\\' {
					l.pos++
				}
				l.pos++
			}
			l.pos++
			return "\"\""
		case c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'):
			start := l.pos
			for l.pos < len(l.s) {
				d := l.s[l.pos]
				if d == '_' || (d >= 'a' && d <= 'z') || (d >= 'A' && d <= 'Z') || (d >= '0' && d <= '9') {
					l.pos++
					continue
				}
				break
			}
			return l.s[start:l.pos]
		default:
			l.pos++
			return string(c)
		}
	}
	return ""
}

type stake struct {
	vs    *venueServer
	token secret.Value
}

func newStake(vs *venueServer, creds map[string]string) (*stake, error) {
	tok := creds["api_token"]
	if tok == "" {
		tok = randHex(32)
	}
	if !isHex(tok, 64) {
		return nil, fmt.Errorf("%w: stake api_token must be 64 hex characters", ErrBadCredentials)
	}
	return &stake{vs: vs, token: secret.FromString(tok)}, nil
}

func (s *stake) credentials() map[string]string {
	return map[string]string{"api_token": string(s.token.Reveal())}
}
func (s *stake) credentialHeaders() []string { return []string{"X-Access-Token"} }
func (s *stake) expireSessions()             {}

// stakeError writes Stake's GraphQL error shape. Stake answers GraphQL
// errors, including authentication ones, with HTTP 200 (bad JSON: 400).
func stakeError(w http.ResponseWriter, code int, errorType, msg string) {
	writeJSON(w, code, map[string]any{
		"data":   nil,
		"errors": []map[string]any{{"message": msg, "errorType": errorType}},
	})
}

func (s *stake) serve(w http.ResponseWriter, r *http.Request, body []byte) {
	if r.URL.Path != "/graphql" {
		s.vs.count("not_found")
		writeJSON(w, http.StatusNotFound, map[string]string{"message": "not found"})
		return
	}
	if r.Method != http.MethodPost {
		s.vs.count("method_not_allowed")
		stakeError(w, http.StatusMethodNotAllowed, "badRequest", "only POST is supported")
		return
	}
	var req GraphQLRequest
	if err := json.Unmarshal(body, &req); err != nil || req.Query == "" {
		s.vs.count("invalid")
		stakeError(w, http.StatusBadRequest, "parseFailed", "could not parse the GraphQL request")
		return
	}
	op, field, mutation := GraphQLOperation(req)
	if op == "" {
		op = "unknown"
	}
	s.vs.count(op)
	if err := VerifyStake(r.Header, s.token); err != nil {
		s.vs.authFailure()
		stakeError(w, http.StatusOK, "unauthorized", "You must be logged in to do that.")
		return
	}
	var vars map[string]any
	if len(req.Variables) > 0 {
		_ = json.Unmarshal(req.Variables, &vars)
	}
	switch {
	case mutation && (field == "sportBet" || strings.EqualFold(op, "SportBet") || strings.EqualFold(op, "PlaceSportBet")):
		o := s.vs.addOrder("sb-", Order{
			ClientOrderID: str(vars["identifier"]),
			Instrument:    strings.Join(strs(vars["outcomeIds"]), ","),
			Side:          "back",
			Price:         str(vars["odds"]),
			Size:          str(vars["amount"]),
		})
		writeJSON(w, http.StatusOK, map[string]any{"data": map[string]any{"sportBet": stakeBet(o, str(vars["currency"]))}})
	case mutation && (field == "cancelSportBet" || strings.EqualFold(op, "CancelSportBet")):
		id := str(vars["betId"])
		o, ok := s.vs.cancelOrder(id)
		if !ok {
			stakeError(w, http.StatusOK, "notFound", "Bet not found or already settled.")
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"data": map[string]any{"cancelSportBet": stakeBet(o, "")}})
	case !mutation && field == "user" && strings.Contains(req.Query, "balances"):
		writeJSON(w, http.StatusOK, map[string]any{"data": map[string]any{"user": map[string]any{
			"id": "sandbox-user",
			"balances": []any{
				map[string]any{"available": map[string]any{"amount": 1.2345, "currency": "btc"}},
				map[string]any{"available": map[string]any{"amount": 1000.5, "currency": "usdt"}},
			},
		}}})
	case !mutation && field == "user" && (strings.Contains(req.Query, "activeSportBets") || strings.Contains(req.Query, "sportBetList")):
		var bets []any
		for _, o := range s.vs.openOrders() {
			bets = append(bets, stakeBet(o, ""))
		}
		writeJSON(w, http.StatusOK, map[string]any{"data": map[string]any{"user": map[string]any{
			"id": "sandbox-user", "activeSportBets": bets,
		}}})
	default:
		stakeError(w, http.StatusOK, "notFound", "Unknown operation.")
	}
}

func stakeBet(o Order, currency string) map[string]any {
	return map[string]any{
		"id": o.ID, "identifier": o.ClientOrderID, "amount": o.Size, "currency": currency,
		"outcomeIds": o.Instrument, "status": map[bool]string{true: "pending", false: "cancelled"}[o.Status == OrderOpen],
		"createdAt": o.Placed,
	}
}

// str renders a decoded JSON scalar as a string ("" for others).
func str(v any) string {
	switch t := v.(type) {
	case string:
		return t
	case float64:
		return fmt.Sprint(t)
	case json.Number:
		return t.String()
	case bool:
		return fmt.Sprint(t)
	}
	return ""
}

func strs(v any) []string {
	a, _ := v.([]any)
	out := make([]string, 0, len(a))
	for _, x := range a {
		out = append(out, str(x))
	}
	return out
}

var _ emulator = (*stake)(nil)
