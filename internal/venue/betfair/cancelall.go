package betfair

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"

	"github.com/keystile/keystile/internal/venue"
)

// listCurrentOrders returns at most 1000 records per call.
const (
	currentPage     = 1000
	maxCurrentPages = 50
)

// currentAnswer is the part of listCurrentOrders' answer keystile reads.
type currentAnswer struct {
	CurrentOrders []struct {
		BetID  string `json:"betId"`
		Status string `json:"status"`
	} `json:"currentOrders"`
	MoreAvailable bool `json:"moreAvailable"`
}

// cancelReport is cancelOrders' CancelExecutionReport.
type cancelReport struct {
	Status             string `json:"status"`
	ErrorCode          string `json:"errorCode"`
	InstructionReports []struct {
		Status      string `json:"status"`
		ErrorCode   string `json:"errorCode"`
		Instruction struct {
			BetID string `json:"betId"`
		} `json:"instruction"`
	} `json:"instructionReports"`
}

// apingError is the REST error document.
type apingError struct {
	Detail struct {
		APINGException struct {
			ErrorCode string `json:"errorCode"`
		} `json:"APINGException"`
	} `json:"detail"`
}

// CancelAll implements venue.CancelAller: listCurrentOrders
// (orderProjection EXECUTABLE: the unmatched bets) names the open bets,
// cancelOrders without marketId or instructions cancels every unmatched
// bet on every market, and a second listing shows what is left. Bets
// listed first and gone now are reported cancelled, whether or not the
// execution report names them.
func (v *Venue) CancelAll(ctx context.Context, send venue.Sender) (venue.CancelResult, error) {
	var res venue.CancelResult
	before, err := currentBets(ctx, send, &res)
	if err != nil {
		return res, err
	}
	if len(before) == 0 {
		return res, nil
	}
	res.Requests++
	status, body, err := send(ctx, restCall("cancelOrders", []byte(`{}`)))
	if err != nil {
		return res, fmt.Errorf("betfair: cancelOrders: %w", err)
	}
	if status != http.StatusOK {
		var e apingError
		_ = json.Unmarshal(body, &e)
		return res, fmt.Errorf("betfair: cancelOrders: %w: status %d: %s", venue.ErrCancelAnswer, status, e.Detail.APINGException.ErrorCode)
	}
	var rep cancelReport
	if err := json.Unmarshal(body, &rep); err != nil || rep.Status == "" {
		return res, fmt.Errorf("betfair: cancelOrders: %w: no execution report", venue.ErrCancelAnswer)
	}
	failed := map[string]string{}
	for _, r := range rep.InstructionReports {
		if r.Status == "SUCCESS" {
			res.AddCancelled(r.Instruction.BetID)
		} else if r.Instruction.BetID != "" {
			failed[r.Instruction.BetID] = r.ErrorCode
		}
	}
	after, err := currentBets(ctx, send, &res)
	if err != nil {
		return res, err
	}
	for _, id := range before {
		if !slices.Contains(after, id) {
			res.AddCancelled(id)
		}
	}
	for _, id := range after {
		reason := "still open after cancelOrders"
		if code := failed[id]; code != "" {
			reason = "betfair: " + code
		} else if rep.ErrorCode != "" {
			reason = "betfair: " + rep.ErrorCode
		}
		res.Failed = append(res.Failed, venue.CancelFailure{OrderID: id, Reason: reason})
	}
	return res, nil
}

// currentBets lists the ids of every unmatched bet, page by page.
func currentBets(ctx context.Context, send venue.Sender, res *venue.CancelResult) ([]string, error) {
	var ids []string
	for page := range maxCurrentPages {
		params, err := json.Marshal(map[string]any{"orderProjection": "EXECUTABLE", "fromRecord": page * currentPage, "recordCount": currentPage})
		if err != nil {
			return nil, fmt.Errorf("betfair: listCurrentOrders: %w", err)
		}
		res.Requests++
		status, body, err := send(ctx, restCall("listCurrentOrders", params))
		if err != nil {
			return nil, fmt.Errorf("betfair: listCurrentOrders: %w", err)
		}
		var a currentAnswer
		if status != http.StatusOK || json.Unmarshal(body, &a) != nil || a.CurrentOrders == nil {
			var e apingError
			_ = json.Unmarshal(body, &e)
			return nil, fmt.Errorf("betfair: listCurrentOrders: %w: status %d %s", venue.ErrCancelAnswer, status, e.Detail.APINGException.ErrorCode)
		}
		for _, o := range a.CurrentOrders {
			if o.BetID == "" {
				return nil, fmt.Errorf("betfair: listCurrentOrders: %w: a bet without betId", venue.ErrCancelAnswer)
			}
			if o.Status == "" || o.Status == "EXECUTABLE" {
				ids = append(ids, o.BetID)
			}
		}
		if !a.MoreAvailable {
			slices.Sort(ids)
			return slices.Compact(ids), nil
		}
	}
	return nil, fmt.Errorf("betfair: listCurrentOrders: %w: more than %d pages", venue.ErrCancelAnswer, maxCurrentPages)
}

// restCall is a betting API REST call with JSON params.
func restCall(op string, params []byte) *venue.Request {
	return &venue.Request{Method: http.MethodPost, Path: bettingREST + op + "/",
		Header: http.Header{"Content-Type": {"application/json"}, "Accept": {"application/json"}}, Body: params}
}

var _ venue.CancelAller = (*Venue)(nil)
