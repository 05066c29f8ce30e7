package storepb

// NewSeriesResponse wraps a series for the Series stream.
func NewSeriesResponse(s *Series) *SeriesResponse {
	return &SeriesResponse{Result: &SeriesResponse_Series{Series: s}}
}

// NewWarnSeriesResponse wraps a warning for the Series stream.
func NewWarnSeriesResponse(warning string) *SeriesResponse {
	return &SeriesResponse{Result: &SeriesResponse_Warning{Warning: warning}}
}
