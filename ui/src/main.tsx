import { render } from 'preact'
import { App } from './app'
import './styles.css'

render(<App />, document.getElementById('app')!)

// "/" moves to the search box from anywhere but a text field, as on most sites.
addEventListener('keydown', (event) => {
  const target = event.target as HTMLElement
  if (event.key !== '/' || event.ctrlKey || event.metaKey || event.altKey || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName)) return
  const search = document.getElementById('q')
  if (search) {
    event.preventDefault()
    search.focus()
  } else {
    location.hash = '#/search'
  }
})
