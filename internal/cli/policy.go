package cli

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"

	"github.com/shopspring/decimal"
	"github.com/spf13/cobra"

	"github.com/keystile/keystile/internal/app"
	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/policy"
	"github.com/keystile/keystile/internal/token"
	"github.com/keystile/keystile/internal/venue"
)

// exitError ends the command with a code after its output was printed
// (Run does not print it again).
type exitError int

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// ExitCode is the process exit code.
func (e exitError) ExitCode() int { return int(e) }

func newPolicy(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Check policy files and explain decisions, offline",
		Long: `policy checks the policies: section of a configuration file and explains, without sending
anything, what the gateway would decide for a saved HTTP request.`,
	}
	cmd.AddCommand(newPolicyCheck(g), newPolicyExplain(g))
	return cmd
}

// configErrorJSON is one configuration problem in --json output.
type configErrorJSON struct {
	File    string `json:"file"`
	Line    int    `json:"line"`
	Column  int    `json:"column"`
	Key     string `json:"key,omitempty"`
	Message string `json:"message"`
}

func configErrorsJSON(err error) []configErrorJSON {
	var out []configErrorJSON
	for _, e := range config.Errors(err) {
		out = append(out, configErrorJSON{File: e.File, Line: e.Line, Column: e.Column, Key: e.Key, Message: e.Msg})
	}
	if len(out) == 0 && err != nil {
		out = append(out, configErrorJSON{Message: err.Error()})
	}
	return out
}

func newPolicyCheck(g *globals) *cobra.Command {
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "check FILE",
		Short: "Validate a configuration file's policies (exit 0 valid, 1 invalid, 2 usage)",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("policy check: want one FILE, got %d arguments", len(args))
			}
			set, err := policy.LoadFile(args[0])
			if jsonOut {
				res := struct {
					File     string            `json:"file"`
					OK       bool              `json:"ok"`
					Policies []string          `json:"policies"`
					Errors   []configErrorJSON `json:"errors,omitempty"`
				}{File: args[0], OK: err == nil, Policies: set.Names(), Errors: configErrorsJSON(err)}
				if res.Policies == nil {
					res.Policies = []string{}
				}
				if perr := g.printJSON(res); perr != nil {
					return perr
				}
			} else if err == nil {
				names := set.Names()
				fmt.Fprintf(g.io.Stdout, "%s: ok, %d policies", args[0], len(names))
				if len(names) > 0 {
					fmt.Fprintf(g.io.Stdout, " (%s)", strings.Join(names, ", "))
				}
				fmt.Fprintln(g.io.Stdout)
			} else {
				for _, e := range configErrorsJSON(err) {
					if e.Line > 0 || e.Key != "" {
						fmt.Fprintln(g.io.Stderr, (&config.Error{File: e.File, Line: e.Line, Column: e.Column, Key: e.Key, Msg: e.Message}).Error())
					} else {
						fmt.Fprintln(g.io.Stderr, e.Message)
					}
				}
			}
			if err != nil {
				return exitError(ExitFailure)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print the result as JSON")
	return cmd
}

// explainResult is what policy explain prints.
// explainResult is the decision explain prints (app.Explain).
type explainResult = app.ExplainResult

func newPolicyExplain(g *globals) *cobra.Command {
	var tokenRef, reqFile, refPrice string
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "explain --token ID --request FILE [--ref-price P]",
		Short: "Show the decision for a saved HTTP request, sending nothing (exit 0 allow, 1 deny, 2 error)",
		Long: `explain reads a saved HTTP/1.1 request as a bot would send it to the gateway
(e.g. "POST /binance/api/v3/order?symbol=BTCUSDT&... HTTP/1.1"), classifies it with the venue's
operations table, reads the order, and evaluates the token's policy in dry-run mode: nothing is
sent, no budget is reserved and no rate-limit token is taken (budgets are read from the store).
--token takes the token's public id (tok_...) or its name. Reference prices are not fetched
(explain is offline): give one with --ref-price for price bands and market-order notionals.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if tokenRef == "" || reqFile == "" {
				return usagef("--token and --request are required")
			}
			if strings.HasPrefix(tokenRef, "kst_") {
				return usagef("pass the token's public ID (tok_...) or name, never the token itself")
			}
			res, err := explain(cmd.Context(), g, tokenRef, reqFile, refPrice)
			if err != nil {
				fmt.Fprintf(g.io.Stderr, "keystile: %v\n", err)
				return exitError(ExitUsage)
			}
			if jsonOut {
				if err := g.printJSON(res); err != nil {
					return err
				}
			} else {
				printExplain(g.io.Stdout, res)
			}
			if res.Decision != "allow" {
				return exitError(ExitFailure)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&tokenRef, "token", "", "token public id (tok_...) or name (required)")
	f.StringVar(&reqFile, "request", "", "file holding the saved HTTP request (required)")
	f.StringVar(&refPrice, "ref-price", "", "reference price of the order's instrument (plain decimal)")
	f.BoolVar(&jsonOut, "json", false, "print JSON")
	return cmd
}

func printExplain(w io.Writer, r *explainResult) {
	fmt.Fprintf(w, "decision:  %s\n", r.Decision)
	if r.Rule != "" {
		fmt.Fprintf(w, "rule:      %s\n", r.Rule)
	}
	if r.Reason != "" {
		fmt.Fprintf(w, "reason:    %s\n", r.Reason)
	}
	if r.Status != 0 {
		fmt.Fprintf(w, "status:    %d\n", r.Status)
	}
	if r.RetryAfter != "" {
		fmt.Fprintf(w, "retry:     %s\n", r.RetryAfter)
	}
	fmt.Fprintf(w, "token:     %s (policy %s)\n", r.Token, r.Policy)
	fmt.Fprintf(w, "venue:     %s\n", r.Venue)
	if r.Operation != "" {
		fmt.Fprintf(w, "operation: %s\n", r.Operation)
	}
	if o := r.Order; o != nil {
		fmt.Fprintf(w, "order:     %s %s %s qty=%s price=%s\n", o.Side, o.Type, o.Instrument, o.Quantity, o.Price)
	}
	if r.Notional != "" {
		fmt.Fprintf(w, "notional:  %s\n", r.Notional)
	}
	fmt.Fprintln(w, "(dry run: nothing was sent, no budget reserved)")
}

// maxSavedRequest bounds the request file explain reads.
const maxSavedRequest = 8 << 20

// SavedRequest is a bot request read from a file by ParseSavedRequest.
type SavedRequest struct {
	Venue    string
	Method   string
	Path     string // escaped, below the venue prefix, starting with '/'
	RawQuery string
	Header   http.Header
	Body     []byte
}

// ParseSavedRequest reads one HTTP/1.x request as a bot sends it to the
// gateway (origin form "/<venue>/<path>" or absolute form) and splits off
// the venue. The body is at most maxBody bytes. Dot segments and encoded
// slashes in the venue segment are refused, as the gateway refuses them.
func ParseSavedRequest(data []byte, maxBody int64) (*SavedRequest, error) {
	// Saved requests are often written by hand with LF line ends.
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(data)))
	if err != nil {
		return nil, fmt.Errorf("request: %w", err)
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, maxBody+1))
	if err != nil {
		return nil, fmt.Errorf("request body: %w", err)
	}
	if int64(len(body)) > maxBody {
		return nil, fmt.Errorf("request body larger than %d bytes", maxBody)
	}
	p := req.URL.EscapedPath()
	if !strings.HasPrefix(p, "/") {
		return nil, errors.New("request path must start with /<venue>/")
	}
	id, rest, _ := strings.Cut(p[1:], "/")
	if id == "" || strings.ContainsAny(id, "%.") {
		return nil, fmt.Errorf("request path %q does not name a venue", p)
	}
	for seg := range strings.SplitSeq(rest, "/") {
		if seg == "." || seg == ".." {
			return nil, errors.New("request path has dot segments")
		}
	}
	return &SavedRequest{Venue: id, Method: req.Method, Path: "/" + rest, RawQuery: req.URL.RawQuery, Header: req.Header, Body: body}, nil
}

func explain(ctx context.Context, g *globals, tokenRef, reqFile, refPrice string) (*explainResult, error) {
	cfg, dir, err := g.resolve()
	if err != nil {
		return nil, err
	}
	set, err := policy.Compile(cfg)
	if err != nil {
		return nil, fmt.Errorf("policies:\n%w", err)
	}
	data, err := os.ReadFile(reqFile) // #nosec G304 -- the operator names the file
	if err != nil {
		return nil, fmt.Errorf("read request: %w", err)
	}
	if len(data) > maxSavedRequest {
		return nil, fmt.Errorf("request file larger than %d bytes", maxSavedRequest)
	}
	sr, err := ParseSavedRequest(data, cfg.Gateway.MaxBodyBytes)
	if err != nil {
		return nil, err
	}
	_, ok := cfg.Venues[sr.Venue]
	if !ok {
		return nil, fmt.Errorf("venue %q is not configured", sr.Venue)
	}
	db, err := app.OpenStores(ctx, g.env(), cfg, dir, app.StoreOptions{})
	if err != nil {
		return nil, err
	}
	defer db.Close()
	tok, err := findToken(ctx, db.Tokens(), tokenRef)
	if err != nil {
		return nil, err
	}
	// Classification only: the venues are built without a vault (nothing
	// is signed, no credential is opened).
	vs, _, err := app.BuildVenues(cfg, nil, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, err
	}
	var impl venue.Venue
	account := ""
	for _, v := range vs {
		if v.ID == sr.Venue {
			impl, account = v.Impl, app.VenueAccount(v)
		}
	}
	if impl == nil {
		return nil, fmt.Errorf("venue %q could not be built", sr.Venue)
	}
	in := app.ExplainInput{Token: tok, Venue: sr.Venue, Impl: impl, Account: account, Method: sr.Method, Path: sr.Path,
		Query: sr.RawQuery, Header: sr.Header, Body: sr.Body}
	if refPrice != "" {
		p, err := decimal.NewFromString(refPrice)
		if err != nil || !p.IsPositive() {
			return nil, usagef("--ref-price must be a positive decimal, got %q", refPrice)
		}
		in.RefPrice = p
	}
	in.Engine = policy.New(policy.Options{Budgets: db.Budgets()})
	in.Engine.Load(set)
	return app.Explain(ctx, in), nil
}

// findToken finds a token record by public id, else by name (which must
// then be unique).
func findToken(ctx context.Context, st token.Store, ref string) (*token.Token, error) {
	recs, err := st.All(ctx)
	if err != nil {
		return nil, err
	}
	var byName []*token.Token
	for i := range recs {
		t := &recs[i].Token
		if string(t.ID) == ref {
			return t, nil
		}
		if t.Name == ref && t.RevokedAt.IsZero() && t.RotatedTo == "" {
			byName = append(byName, t)
		}
	}
	switch len(byName) {
	case 1:
		return byName[0], nil
	case 0:
		return nil, fmt.Errorf("no token %q (see keystile token list)", ref)
	}
	return nil, fmt.Errorf("%d tokens are named %q: pass the id (tok_...)", len(byName), ref)
}
