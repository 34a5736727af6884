package fleetstats

// AfterPublish makes p call f after each publication.
func AfterPublish(p *Publisher, f func(error)) { p.afterPublish = f }
