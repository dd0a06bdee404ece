package detect

import (
	"context"
	"maps"
	"math"
	"time"
)

// ProfileView is what the detector has learned about one token, for
// operators (and tests): counts, usual values, known instruments and
// venues, how many source addresses, orders by hour of the week.
type ProfileView struct {
	Token       string                  `json:"token"`
	First       time.Time               `json:"first_seen"`
	Last        time.Time               `json:"last_seen"`
	Requests    int64                   `json:"requests"`
	Orders      int64                   `json:"orders"`
	OrderRate   BaselineView            `json:"order_rate"`
	Notional    map[string]BaselineView `json:"notional_per_window"`
	Size        map[string]BaselineView `json:"order_size"`
	Instruments map[string]int64        `json:"instruments"`
	Venues      map[string]int64        `json:"venues"`
	Sources     int                     `json:"sources"`
	Hours       [168]uint32             `json:"orders_by_hour_of_week"`
}

// BaselineView is one learned baseline.
type BaselineView struct {
	Observations int64   `json:"observations"`
	Ready        bool    `json:"ready"` // warm-up over
	Usual        float64 `json:"usual"` // exp(mean + 2·sd); 0 until ready
	Mean         float64 `json:"mean_log"`
	SD           float64 `json:"sd_log"`
	Window       string  `json:"window,omitempty"`
}

func viewOf(s *logStat) BaselineView {
	v := BaselineView{Observations: s.N, Ready: s.Ready, Usual: s.usual(), Mean: s.Mean, SD: math.Sqrt(s.Var)}
	if s.Window > 0 {
		v.Window = time.Duration(s.Window).String()
	}
	return v
}

// Profile returns what was learned about token id (false if nothing). It
// waits for the events queued before it to be analysed.
func (d *Detector) Profile(ctx context.Context, id string) (ProfileView, bool, error) {
	res := make(chan ProfileView, 1)
	err := d.onWorker(ctx, func() {
		el, ok := d.profiles[tokenKey(id)]
		if !ok {
			close(res)
			return
		}
		p := el.Value.(*profile)
		v := ProfileView{Token: id, First: p.First, Last: p.Last, Requests: p.Requests, Orders: p.Orders,
			OrderRate: viewOf(&p.Rate.Stat), Notional: map[string]BaselineView{}, Size: map[string]BaselineView{},
			Instruments: maps.Clone(p.Instruments), Venues: maps.Clone(p.Venues), Sources: len(p.Sources), Hours: p.Hours.Hours}
		for k, w := range p.Notional {
			v.Notional[k] = viewOf(&w.Stat)
		}
		for k, s := range p.Size {
			v.Size[k] = viewOf(s)
		}
		res <- v
	})
	if err != nil {
		return ProfileView{}, false, err
	}
	v, found := <-res
	return v, found, nil
}
