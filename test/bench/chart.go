package main

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"
	"os"
	"time"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// The chart shows every failover sample as a dot on a logarithmic time axis, one row per implementation and
// N, one panel per scenario, with the median and the 99th percentile marked.
const (
	chartWidth  = 1100
	labelWidth  = 250
	plotRight   = chartWidth - 30
	rowHeight   = 22
	panelHeader = 40
	axisHeight  = 24
	minDecade   = 0 // 10^0 ms = 1 ms
	maxDecade   = 5 // 10^5 ms = 100 s
)

var (
	implColor = map[impl]color.RGBA{
		life:  {0x1f, 0x77, 0xb4, 0xff},
		lease: {0xff, 0x7f, 0x0e, 0xff},
		oplib: {0x2c, 0xa0, 0x2c, 0xff},
	}
	black = color.RGBA{0, 0, 0, 0xff}
	grey  = color.RGBA{0xd0, 0xd0, 0xd0, 0xff}
)

func xOf(d time.Duration) int {
	msv := math.Max(float64(d)/float64(time.Millisecond), math.Pow(10, minDecade))
	f := (math.Log10(msv) - minDecade) / (maxDecade - minDecade)
	return labelWidth + int(math.Min(f, 1)*float64(plotRight-labelWidth))
}

func writeChart(path string, rn *run) error {
	rows := 0
	for _, n := range rn.Cfg.ns {
		for _, i := range rn.Cfg.impls {
			if rn.find(i, n) != nil {
				rows++
			}
		}
	}
	panel := panelHeader + rows*rowHeight + axisHeight
	img := image.NewRGBA(image.Rect(0, 0, chartWidth, 30+panel*len(allScenarios)))
	draw.Draw(img, img.Bounds(), image.White, image.Point{}, draw.Src)
	text(img, 10, 20, black, "Failover latency: Pod delete request -> next leader's first action (log scale). Dots: samples; tall bar: p50; short bar: p99.")
	for p, sc := range allScenarios {
		top := 30 + p*panel
		text(img, 10, top+25, black, fmt.Sprintf("%s (%d per row)", sc, rn.Cfg.reps))
		y0 := top + panelHeader
		for dec := minDecade; dec <= maxDecade; dec++ {
			x := xOf(time.Duration(math.Pow(10, float64(dec))) * time.Millisecond)
			vline(img, x, y0-4, y0+rows*rowHeight, grey)
			text(img, x-12, y0+rows*rowHeight+16, black, map[int]string{0: "1ms", 1: "10ms", 2: "100ms", 3: "1s", 4: "10s", 5: "100s"}[dec])
		}
		row := 0
		for _, n := range rn.Cfg.ns {
			for _, i := range rn.Cfg.impls {
				r := rn.find(i, n)
				if r == nil {
					continue
				}
				cy := y0 + row*rowHeight + rowHeight/2
				text(img, 10, cy+4, implColor[i], fmt.Sprintf("N=%-3d %s", n, i.title()))
				samples := r.Failovers[sc]
				for k, s := range samples {
					jitter := (k*7)%11 - 5 // spread the dots so that equal values stay visible
					dot(img, xOf(s.Latency), cy+jitter, implColor[i])
				}
				if ls := latencies(samples); len(ls) > 0 {
					vline(img, xOf(percentile(ls, 0.5)), cy-9, cy+9, black)
					vline(img, xOf(percentile(ls, 0.5))+1, cy-9, cy+9, black)
					vline(img, xOf(percentile(ls, 0.99)), cy-5, cy+5, black)
				}
				row++
			}
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

func text(img *image.RGBA, x, y int, c color.Color, s string) {
	d := font.Drawer{Dst: img, Src: image.NewUniform(c), Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
	d.DrawString(s)
}

func vline(img *image.RGBA, x, y1, y2 int, c color.Color) {
	for y := y1; y <= y2; y++ {
		img.Set(x, y, c)
	}
}

func dot(img *image.RGBA, x, y int, c color.Color) {
	for dx := -1; dx <= 1; dx++ {
		for dy := -1; dy <= 1; dy++ {
			img.Set(x+dx, y+dy, c)
		}
	}
}
